"""Tasks: what a batch is, what the loss is, which metrics each stage logs, and how the network is evaluated.

A task object is shared by every LightningModule of the package (:class:`~hwnas_pl.modules.base.HWNASModule` runs
one ``training_step``/``validation_step``/``test_step`` over it), so that a supernet, an analog network or a reuse
network trains for classification, segmentation or regression alike:

- :meth:`Task.unpack` turns any batch form of the task into ``(x, y)`` (tuples, MONAI dicts, consecutive frames);
- :meth:`Task.infer` evaluates the network (sliding window and slice-wise for segmentation);
- :meth:`Task.loss` is the task loss (shape mismatches get one sentence);
- :meth:`Task.update` / :meth:`Task.epoch_end` update and log the stage's metrics (``train/loss``, ``val/acc``...);
- :meth:`Task.score_state` / :meth:`Task.score` give a higher-is-better held-out score from statistics that sum
  over batches and ranks (accuracy, mIoU, −AAE): what a supernet ranks sub-networks by;
- :meth:`Task.retrain_model` names the LightningModule that retrains a found architecture.

Metrics are created by :meth:`Task.metrics` and registered on the module under their names (``val_acc``,
``val_acc_best``...), so checkpoints keep the keys they always had.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MaxMetric, MeanAbsoluteError, MeanMetric, Metric, MinMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassStatScores

from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.similarity_regularization import kl_divergence

Net = Callable[[torch.Tensor], torch.Tensor]
STAGES = ("train", "val", "test")


def unpack_pair(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a tuple batch or a MONAI-style dict ``{"image", "label"}``."""
    if isinstance(batch, dict):
        return batch["image"], batch["label"]
    return batch[0], batch[1]


def inputs_of(batch: Any) -> Any:
    """The inputs of a batch that may have no targets (prediction)."""
    if isinstance(batch, dict):
        return batch["image"]
    return batch[0] if isinstance(batch, (list, tuple)) else batch


class Task:
    """Base class of the tasks (template: override the methods the task needs).

    Args:
        num_classes: outputs of the network (classes, or regression outputs).
        input_shape: shape of one input sample.
    """

    #: the metric ``ModelCheckpoint``/early stopping usually watch, and whether higher is better
    monitor: str = "val/loss"
    higher_is_better: bool = False

    def __init__(self, num_classes: int, input_shape: Sequence[int]) -> None:
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(s) for s in input_shape)

    # ------------------------------------------------------------------ data and network
    def unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of any batch form the task accepts."""
        return unpack_pair(batch)

    def predict_inputs(self, batch: Any) -> torch.Tensor:
        """The inputs of a prediction batch (targets optional)."""
        return inputs_of(batch)

    def infer(self, net: Net, x: torch.Tensor) -> torch.Tensor:
        """The network's outputs for evaluation (default: one forward pass)."""
        return net(x)

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, outputs: torch.Tensor) -> Any:
        """What ``predict_step`` returns for the network's outputs."""
        return outputs

    # ------------------------------------------------------------------ metrics
    def metrics(self) -> dict[str, Metric]:
        """Metric objects by attribute name; the module registers each under that name."""
        return {f"{s}_loss": MeanMetric() for s in STAGES}

    def update(self, module: Any, stage: str, loss: torch.Tensor, outputs: torch.Tensor, y: torch.Tensor) -> None:
        """Update and log the stage's per-batch metrics (default: the mean loss)."""
        self.log_loss(module, stage, loss, y.shape[0], prog_bar=stage != "test")

    @staticmethod
    def log_loss(module: Any, stage: str, loss: torch.Tensor, n: int, prog_bar: bool) -> None:
        """Add ``loss`` (a batch of ``n`` samples) to the stage's mean and log it as ``{stage}/loss``."""
        metric = getattr(module, f"{stage}_loss")
        metric(loss.detach(), weight=n)
        module.log(f"{stage}/loss", metric, on_step=False, on_epoch=True, prog_bar=prog_bar)

    def epoch_end(self, module: Any, stage: str) -> None:
        """Log what is computed once per epoch (best-so-far values, scores from accumulated statistics)."""

    # ------------------------------------------------------------------ held-out score (supernet ranking)
    def score_state(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Float64 statistics of one batch that add up over batches and ranks into :meth:`score`'s input."""
        raise NotImplementedError

    def score(self, state: torch.Tensor) -> float:
        """Higher-is-better score of summed :meth:`score_state` statistics."""
        raise NotImplementedError

    # ------------------------------------------------------------------ retraining
    def retrain_model(self, backbone: dict[str, Any]) -> dict[str, Any]:
        """``{class_path, init_args}`` of the LightningModule that trains ``backbone`` (a class_path config)."""
        raise NotImplementedError


class ClassificationTask(Task):
    """Cross-entropy classification; logs ``{stage}/loss``, ``{stage}/acc`` and ``val/acc_best``.

    Args:
        num_classes: number of classes.
        input_shape: shape of one sample.
        label_smoothing: label smoothing of the cross-entropy.
        heldout_score: what ranks sub-networks on held-out data: ``accuracy`` (top-1) or ``cross_entropy`` (its
            negated mean: continuous, where two batches of accuracy move in steps of 1/256).
    """

    monitor = "val/acc"
    higher_is_better = True

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int] = (3, 32, 32),
        label_smoothing: float = 0.0,
        heldout_score: str = "accuracy",
    ):
        super().__init__(num_classes, input_shape)
        if self.num_classes < 2:
            raise ConfigError(f"Classification needs num_classes >= 2, got {num_classes}.")
        if heldout_score not in ("accuracy", "cross_entropy"):
            raise ConfigError(f"heldout_score must be 'accuracy' or 'cross_entropy', got '{heldout_score}'.")
        self.label_smoothing = label_smoothing
        self.heldout_score = heldout_score

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        expected = (y.shape[0], self.num_classes)
        if tuple(outputs.shape) != expected:
            raise ConfigError(
                f"The backbone returned logits of shape {tuple(outputs.shape)} for a batch of {y.shape[0]} samples; "
                f"expected (batch, num_classes) = {expected}."
            )
        return F.cross_entropy(outputs, y, label_smoothing=self.label_smoothing)

    def predict(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        probs = outputs.softmax(dim=-1)
        return {"probs": probs, "preds": probs.argmax(dim=-1)}

    def metrics(self) -> dict[str, Metric]:
        out = super().metrics()
        out.update({f"{s}_acc": MulticlassAccuracy(self.num_classes, average="micro") for s in STAGES})
        best = MaxMetric()
        best.persistent(True)  # the best accuracy so far survives a resume
        out["val_acc_best"] = best
        return out

    def update(self, module: Any, stage: str, loss: torch.Tensor, outputs: torch.Tensor, y: torch.Tensor) -> None:
        super().update(module, stage, loss, outputs, y)
        acc = getattr(module, f"{stage}_acc")
        acc(outputs.detach(), y)
        module.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def epoch_end(self, module: Any, stage: str) -> None:
        if stage != "val" or module.trainer.sanity_checking:  # the sanity check's batches are not an epoch
            return
        module.val_acc_best(module.val_acc.compute())
        module.log("val/acc_best", module.val_acc_best.compute(), sync_dist=True)

    def score_state(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(correct, samples, summed cross-entropy)."""
        correct = (outputs.argmax(dim=1) == y).sum().double()
        ce = F.cross_entropy(outputs.double(), y, reduction="sum")
        return torch.stack([correct, torch.tensor(float(y.numel()), dtype=torch.float64, device=y.device), ce])

    def score(self, state: torch.Tensor) -> float:
        """Top-1 accuracy, or the negated mean cross-entropy (``heldout_score``)."""
        if getattr(self, "heldout_score", "accuracy") == "cross_entropy":
            return float(-state[2] / state[1].clamp_min(1))
        return float(state[0] / state[1].clamp_min(1))

    def retrain_model(self, backbone: dict[str, Any]) -> dict[str, Any]:
        return {"class_path": "hwnas_pl.modules.ClassifierModule",
                "init_args": {"backbone": backbone, "label_smoothing": self.label_smoothing}}  # fmt: skip


SEGMENTATION_METRICS = ("miou", "f1", "dice", "pixel_acc")


def segmentation_scores(stats: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scores from per-class ``(tp, fp, tn, fn, support)`` rows (torchmetrics' StatScores, ``average=None``).

    - ``miou``: mean over classes seen in prediction or target of IoU_c = tp / (tp + fp + fn);
    - ``f1`` = ``dice``: mean over foreground classes (1..C-1) seen of 2·tp / (2·tp + fp + fn);
    - ``pixel_acc``: Σ tp / Σ support.
    """
    tp, fp, fn, support = stats[:, 0].double(), stats[:, 1].double(), stats[:, 3].double(), stats[:, 4].double()
    union = tp + fp + fn
    seen = union > 0
    iou = tp[seen] / union[seen]
    fg = seen.clone()
    fg[0] = False
    f1 = 2 * tp[fg] / (2 * tp[fg] + fp[fg] + fn[fg])
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    return {
        "miou": iou.mean() if iou.numel() else nan,
        "f1": f1.mean() if f1.numel() else nan,
        "dice": f1.mean() if f1.numel() else nan,
        "pixel_acc": tp.sum() / support.sum().clamp_min(1),
    }


class SegmentationTask(Task):
    """Per-pixel (per-voxel) classification with cross-entropy or Dice + cross-entropy.

    Batches are ``(image, label)`` with labels ``(B, H, W)``, consecutive-frame items ``(B, L, 3, H, W)`` /
    ``(B, L, H, W)`` (flattened to ``B·L`` frames), or MONAI dicts ``{"image", "label"}`` with ``(B, 1, ...)`` labels.
    Evaluation infers images larger than ``roi_size`` with a sliding window; a 2-D network given 3-D volumes predicts
    them slice by slice. Logs ``{stage}/loss`` and ``{stage}/{metric}`` for ``metrics`` of
    :func:`segmentation_scores`.

    Args:
        num_classes: classes including background.
        input_shape: (channels, *spatial) of one training sample.
        loss: ``ce`` or ``dice_ce`` (MONAI's DiceCELoss; no ignore index).
        ignore_index: label value excluded from loss and metrics.
        metrics: names among ``miou``, ``f1``, ``dice``, ``pixel_acc``.
        roi_size: sliding-window size for evaluation; ``None``: the training sample's spatial size.
    """

    monitor = "val/miou"
    higher_is_better = True

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int] = (3, 64, 64),
        loss: str = "ce",
        ignore_index: int = 255,
        metrics: Sequence[str] = ("miou", "f1"),
        roi_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__(num_classes, input_shape)
        if loss not in ("ce", "dice_ce"):
            raise ConfigError(f"SegmentationModule loss must be 'ce' or 'dice_ce', got '{loss}'.")
        unknown = [m for m in metrics if m not in SEGMENTATION_METRICS]
        if unknown:
            raise ConfigError(
                f"SegmentationModule metrics {unknown} are unknown; expected names among {SEGMENTATION_METRICS}."
            )
        if self.num_classes < 2:
            raise ConfigError(f"SegmentationModule needs num_classes >= 2 (background included), got {num_classes}.")
        self.loss_name, self.ignore_index, self.metric_names = loss, ignore_index, list(metrics)
        self.spatial_dims = len(self.input_shape) - 1
        self.roi_size = tuple(roi_size) if roi_size is not None else tuple(self.input_shape[1:])
        self.dice_ce = None
        if loss == "dice_ce":
            from monai.losses import DiceCELoss

            self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)

    def unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, C, *spatial), labels (N, *spatial) long)`` from any batch form the task accepts."""
        if isinstance(batch, dict):
            x, y = batch["image"], batch["label"]
            y = y[:, 0] if y.dim() == x.dim() else y
        else:
            x, y = batch[0], batch[1]
            if self.spatial_dims == 2 and x.dim() == 5 and y.dim() == 4:  # (B, L, C, H, W) consecutive frames
                x, y = x.flatten(0, 1), y.flatten(0, 1)
        return torch.as_tensor(x).float(), torch.as_tensor(y).long()

    def predict_inputs(self, batch: Any) -> torch.Tensor:
        x = inputs_of(batch)
        if not isinstance(batch, dict) and self.spatial_dims == 2 and x.dim() == 5:  # (B, L, C, H, W) frames
            x = x.flatten(0, 1)
        return torch.as_tensor(x).float()

    def infer(self, net: Net, x: torch.Tensor) -> torch.Tensor:
        """Logits: slice by slice for a 2-D network on volumes, sliding window beyond ``roi_size``."""
        if x.dim() == self.spatial_dims + 3:  # 2-D network, (B, C, H, W, D) volume
            b, d = x.shape[0], x.shape[-1]
            slices = x.permute(0, 4, 1, 2, 3).flatten(0, 1)
            logits = torch.cat([self.infer(net, chunk) for chunk in slices.split(16)])
            return logits.view(b, d, *logits.shape[1:]).permute(0, 2, 3, 4, 1)
        if any(s > r for s, r in zip(x.shape[2:], self.roi_size)):
            from monai.inferers import sliding_window_inference

            return sliding_window_inference(x, self.roi_size, 4, net, overlap=0.25)
        return net(x)

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if outputs.shape[0] != y.shape[0] or outputs.shape[2:] != y.shape[1:] or outputs.shape[1] != self.num_classes:
            raise ConfigError(
                f"The backbone returned logits of shape {tuple(outputs.shape)} for labels of shape {tuple(y.shape)}; "
                f"expected (batch, {self.num_classes}, *label spatial shape)."
            )
        if self.dice_ce is not None:
            return self.dice_ce(outputs, y.unsqueeze(1))
        return F.cross_entropy(outputs, y, ignore_index=self.ignore_index)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class maps."""
        return outputs.argmax(1)

    def metrics(self) -> dict[str, Metric]:
        out = super().metrics()
        for s in ("val", "test"):
            out[f"{s}_stats"] = MulticlassStatScores(self.num_classes, average=None, ignore_index=self.ignore_index)
        return out

    def update(self, module: Any, stage: str, loss: torch.Tensor, outputs: torch.Tensor, y: torch.Tensor) -> None:
        self.log_loss(module, stage, loss, outputs.shape[0], prog_bar=stage == "train")
        if stage != "train":
            getattr(module, f"{stage}_stats").update(outputs.detach().argmax(1), y)

    def epoch_end(self, module: Any, stage: str) -> None:
        if stage == "train":
            return
        stats = getattr(module, f"{stage}_stats")
        scores = segmentation_scores(stats.compute())  # synchronised over DDP ranks
        for name in self.metric_names:
            module.log(f"{stage}/{name}", scores[name].float(), prog_bar=name == self.metric_names[0])
        stats.reset()

    def score_state(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-class (tp, fp, fn), flattened: the mIoU's sufficient statistics."""
        pred, keep = outputs.argmax(1), y != self.ignore_index
        pred, y = pred[keep], y[keep]
        c = self.num_classes
        conf = torch.bincount(y * c + pred, minlength=c * c).view(c, c).double()
        tp = conf.diagonal()
        return torch.cat([tp, conf.sum(0) - tp, conf.sum(1) - tp])

    def score(self, state: torch.Tensor) -> float:
        """Mean IoU over the classes seen (:func:`segmentation_scores`' ``miou``)."""
        tp, fp, fn = state.view(3, -1)
        union = tp + fp + fn
        seen = union > 0
        return float((tp[seen] / union[seen]).mean()) if seen.any() else 0.0

    def retrain_model(self, backbone: dict[str, Any]) -> dict[str, Any]:
        return {"class_path": "hwnas_pl.modules.SegmentationModule",
                "init_args": {"backbone": backbone, "loss": self.loss_name, "ignore_index": self.ignore_index,
                              "metrics": self.metric_names, "roi_size": list(self.roi_size)}}  # fmt: skip


REGRESSION_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss, "huber": F.smooth_l1_loss}


class RegressionTask(Task):
    """Regression with an L1/MSE/Huber loss; logs the average absolute error (AAE) in the targets' unit.

    Logs ``train/loss``, ``val/loss``, ``val/aae``, ``val/aae_best`` and ``test/aae`` (AAE = mean |ŷ − y|).

    Args:
        num_classes: number of regression outputs.
        input_shape: shape of one sample.
        loss: ``l1``, ``mse`` or ``huber``.
        target_offset, target_scale: the network predicts ``(y − offset) / scale``; predictions and metrics are in
            the targets' unit.
    """

    monitor = "val/aae"
    higher_is_better = False

    def __init__(
        self,
        num_classes: int = 1,
        input_shape: Sequence[int] = (5, 1000),
        loss: str = "l1",
        target_offset: float = 0.0,
        target_scale: float = 1.0,
    ) -> None:
        super().__init__(num_classes, input_shape)
        if loss not in REGRESSION_LOSSES:
            raise ConfigError(f"RegressionModule loss must be one of {sorted(REGRESSION_LOSSES)}, got '{loss}'.")
        if target_scale <= 0:
            raise ConfigError(f"RegressionModule target_scale must be positive, got {target_scale}.")
        self.loss_name, self.loss_fn = loss, REGRESSION_LOSSES[loss]
        self.offset, self.scale = target_offset, target_scale

    def to_unit(self, raw: torch.Tensor) -> torch.Tensor:
        """Network outputs in the targets' unit."""
        return raw * self.scale + self.offset

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if outputs.shape != y.shape:
            raise ConfigError(
                f"The backbone returned predictions of shape {tuple(outputs.shape)} for targets of shape "
                f"{tuple(y.shape)}; expected the same shape."
            )
        return self.loss_fn(outputs, (y - self.offset) / self.scale)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.to_unit(outputs)

    def metrics(self) -> dict[str, Metric]:
        out = {"train_loss": MeanMetric(), "val_loss": MeanMetric(), "val_aae": MeanAbsoluteError(),
               "test_aae": MeanAbsoluteError()}  # fmt: skip
        best = MinMetric()
        best.persistent(True)
        out["val_aae_best"] = best
        return out

    def update(self, module: Any, stage: str, loss: torch.Tensor, outputs: torch.Tensor, y: torch.Tensor) -> None:
        if stage != "test":
            self.log_loss(module, stage, loss, y.shape[0], prog_bar=stage == "train")
        if stage != "train":
            aae = getattr(module, f"{stage}_aae")
            aae(self.to_unit(outputs.detach()), y)
            module.log(f"{stage}/aae", aae, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def epoch_end(self, module: Any, stage: str) -> None:
        if stage != "val" or module.trainer.sanity_checking:
            return
        module.val_aae_best(module.val_aae.compute())
        module.log("val/aae_best", module.val_aae_best.compute(), sync_dist=True)

    def score_state(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(Σ |ŷ − y|, values)."""
        err = (self.to_unit(outputs) - y).abs().sum().double()
        return torch.stack([err, torch.tensor(float(y.numel()), dtype=torch.float64, device=y.device)])

    def score(self, state: torch.Tensor) -> float:
        """−AAE (higher is better)."""
        return -float(state[0] / state[1].clamp_min(1))

    def retrain_model(self, backbone: dict[str, Any]) -> dict[str, Any]:
        return {"class_path": "hwnas_pl.modules.RegressionModule",
                "init_args": {"backbone": backbone, "loss": self.loss_name, "target_offset": self.offset,
                              "target_scale": self.scale}}  # fmt: skip


class DistillationTask(Task):
    r"""Label-free fine-tuning (beyond "Treasure What You Have"): match a frozen teacher's outputs on unlabelled data.

    The loss (``objective: kl``) is :math:`T^2 \, D_{KL}(\operatorname{softmax}(t/T) \,\|\,
    \operatorname{softmax}(s/T))` over the class (or, per pixel, the channel) dimension of the student's outputs
    :math:`s` and the teacher's :math:`t`, averaged over samples and pixels; or (``objective: nmse``) the outputs'
    normalised squared error :math:`\sum (s - t)^2 / \sum t^2` over the batch, which matches the logits themselves
    (the NMSE ``hwnas bench reuse`` reports), where a near-uniform softmax gives the KL little to match. Logged as
    ``{stage}/loss``, with ``{stage}/agreement``, the share of samples (pixels) whose top class is the teacher's.
    Batches are unlabelled frames ``(B, C, H, W)``, clips ``(B, L, C, H, W)`` or pairs ``[frames t, frames t+1]``
    (flattened clip by clip to ``B·L`` frames); a labelled ``(x, y)`` batch has its labels ignored. The module sets
    :attr:`teacher`.

    Args:
        num_classes: outputs of the network.
        input_shape: shape of one input frame.
        temperature: :math:`T` (``kl``).
        objective: ``kl`` or ``nmse``.
    """

    monitor = "val/agreement"
    higher_is_better = True

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int] = (3, 224, 224),
        temperature: float = 1.0,
        objective: str = "kl",
    ):
        super().__init__(num_classes, input_shape)
        if temperature <= 0:
            raise ConfigError(f"DistillationTask temperature must be > 0, got {temperature}.")
        if objective not in ("kl", "nmse"):
            raise ConfigError(f"DistillationTask objective must be kl or nmse, got '{objective}'.")
        self.temperature, self.objective = float(temperature), objective
        self.teacher: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(frames, frames)``: the target of a frame is the teacher's output on it."""
        pairs = isinstance(batch, (list, tuple)) and len(batch) > 1 and batch[0].dim() == 4
        pairs = pairs and all(isinstance(b, torch.Tensor) and b.shape == batch[0].shape for b in batch)
        x = torch.stack(list(batch), 1) if pairs else inputs_of(batch)  # frames t, t+1 -> clips of 2
        if x.dim() == 5:  # (B, L, C, H, W) clips -> B*L frames, clip by clip
            x = x.flatten(0, 1)
        return x, x

    def predict_inputs(self, batch: Any) -> torch.Tensor:
        return self.unpack(batch)[0]

    def teacher_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's outputs on ``x`` (computed once per batch)."""
        if self.teacher is None:
            raise ConfigError("DistillationTask has no teacher; expected the module to set one.")
        if self._last is None or self._last[0] is not x:
            with torch.no_grad():
                self._last = (x, self.teacher(x))
        return self._last[1]

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.objective == "nmse":
            teacher = self.teacher_outputs(y).float()
            return ((outputs.float() - teacher) ** 2).sum() / (teacher**2).sum().clamp_min(1e-30)
        t = self.temperature
        target = F.log_softmax(self.teacher_outputs(y).float() / t, dim=1)
        return kl_divergence(target, F.log_softmax(outputs.float() / t, dim=1)) * t * t

    def metrics(self) -> dict[str, Metric]:
        return {**super().metrics(), **{f"{s}_agreement": MeanMetric() for s in STAGES}}

    def update(self, module: Any, stage: str, loss: torch.Tensor, outputs: torch.Tensor, y: torch.Tensor) -> None:
        self.log_loss(module, stage, loss, y.shape[0], prog_bar=stage != "test")
        same = (outputs.argmax(1) == self.teacher_outputs(y).argmax(1)).float()
        metric = getattr(module, f"{stage}_agreement")
        metric(same.mean(), weight=same.numel())
        module.log(f"{stage}/agreement", metric, on_step=False, on_epoch=True, prog_bar=stage != "train")
