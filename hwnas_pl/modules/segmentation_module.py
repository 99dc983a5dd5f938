"""Semantic segmentation (2-D frames, 3-D volumes, or 2-D slices of volumes) with mIoU, F1/Dice and pixel accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassStatScores
from typing_extensions import override

from hwnas_pl.errors import ConfigError
from hwnas_pl.modules.base import HWNASModule
from hwnas_pl.modules.classifier_module import BackboneFactory, build_backbone

METRICS = ("miou", "f1", "dice", "pixel_acc")


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


class SegmentationModule(HWNASModule):
    """Per-pixel (per-voxel) classification with cross-entropy or Dice + cross-entropy.

    Batches are ``(image, label)`` with labels ``(B, H, W)``, consecutive-frame items ``(B, L, 3, H, W)`` /
    ``(B, L, H, W)`` (flattened to ``B·L`` frames), or MONAI dicts ``{"image", "label"}`` with ``(B, 1, ...)`` labels.
    Validation and test images larger than ``roi_size`` are inferred with a sliding window; a 2-D network given 3-D
    volumes predicts them slice by slice. Logs ``{stage}/loss`` and ``{stage}/{metric}`` for ``metrics`` from
    :func:`segmentation_scores`.

    Args:
        backbone: see :func:`~hwnas_pl.modules.classifier_module.build_backbone` (e.g.
            ``hwnas_pl.segmentation_networks.UNet``).
        num_classes: classes including background (linked from the DataModule by the CLI).
        input_shape: (channels, *spatial) of one training sample (linked from the DataModule by the CLI).
        loss: ``ce`` or ``dice_ce`` (MONAI's DiceCELoss; no ignore index).
        ignore_index: label value excluded from loss and metrics.
        metrics: names among ``miou``, ``f1``, ``dice``, ``pixel_acc``.
        roi_size: sliding-window size for evaluation; ``None``: the training sample's spatial size.
        optimizer, scheduler: as in :class:`~hwnas_pl.modules.ClassifierModule`.
    """

    def __init__(
        self,
        backbone: str | BackboneFactory = "hwnas_pl.segmentation_networks.UNet",
        num_classes: int = 2,
        input_shape: Sequence[int] = (3, 64, 64),
        loss: str = "ce",
        ignore_index: int = 255,
        metrics: Sequence[str] = ("miou", "f1"),
        roi_size: Sequence[int] | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if loss not in ("ce", "dice_ce"):
            raise ConfigError(f"SegmentationModule loss must be 'ce' or 'dice_ce', got '{loss}'.")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ConfigError(f"SegmentationModule metrics {unknown} are unknown; expected names among {METRICS}.")
        if num_classes < 2:
            raise ConfigError(f"SegmentationModule needs num_classes >= 2 (background included), got {num_classes}.")
        self.save_plain_hyperparameters()
        self.net = build_backbone(backbone, num_classes, input_shape)
        self.num_classes, self.ignore_index, self.metric_names = num_classes, ignore_index, list(metrics)
        self.spatial_dims = len(input_shape) - 1
        self.roi_size = tuple(roi_size) if roi_size is not None else tuple(input_shape[1:])
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.dice_ce = None
        if loss == "dice_ce":
            from monai.losses import DiceCELoss

            self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
        self.losses = torch.nn.ModuleDict({f"{s}_loss": MeanMetric() for s in ("train", "val", "test")})
        self.stats = torch.nn.ModuleDict(
            {
                f"{s}_stats": MulticlassStatScores(num_classes, average=None, ignore_index=ignore_index)
                for s in ("val", "test")
            }
        )

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, C, *spatial), labels (N, *spatial) long)`` from any batch form the module accepts."""
        if isinstance(batch, dict):
            x, y = batch["image"], batch["label"]
            y = y[:, 0] if y.dim() == x.dim() else y
        else:
            x, y = batch[0], batch[1]
            if self.spatial_dims == 2 and x.dim() == 5 and y.dim() == 4:  # (B, L, C, H, W) consecutive frames
                x, y = x.flatten(0, 1), y.flatten(0, 1)
        return torch.as_tensor(x).float(), torch.as_tensor(y).long()

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for evaluation: slice by slice for a 2-D network on volumes, sliding window beyond ``roi_size``."""
        if x.dim() == self.spatial_dims + 3:  # 2-D network, (B, C, H, W, D) volume
            b, d = x.shape[0], x.shape[-1]
            slices = x.permute(0, 4, 1, 2, 3).flatten(0, 1)
            logits = torch.cat([self.infer(chunk) for chunk in slices.split(16)])
            return logits.view(b, d, *logits.shape[1:]).permute(0, 2, 3, 4, 1)
        if any(s > r for s, r in zip(x.shape[2:], self.roi_size)):
            from monai.inferers import sliding_window_inference

            return sliding_window_inference(x, self.roi_size, 4, self.net, overlap=0.25)
        return self.net(x)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if logits.shape[0] != y.shape[0] or logits.shape[2:] != y.shape[1:] or logits.shape[1] != self.num_classes:
            raise ConfigError(
                f"The backbone returned logits of shape {tuple(logits.shape)} for labels of shape {tuple(y.shape)}; "
                f"expected (batch, {self.num_classes}, *label spatial shape)."
            )
        if self.dice_ce is not None:
            return self.dice_ce(logits, y.unsqueeze(1))
        return F.cross_entropy(logits, y, ignore_index=self.ignore_index)

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = self.unpack(batch)
        loss = self.check_finite(self._loss(self.net(x), y))
        self.losses["train_loss"](loss, weight=x.shape[0])
        self.log("train/loss", self.losses["train_loss"], on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _evaluate(self, batch: Any, stage: str) -> None:
        x, y = self.unpack(batch)
        logits = self.infer(x)
        self.losses[f"{stage}_loss"](self._loss(logits, y), weight=x.shape[0])
        self.stats[f"{stage}_stats"].update(logits.argmax(1), y)
        self.log(f"{stage}/loss", self.losses[f"{stage}_loss"], on_step=False, on_epoch=True)

    def _log_scores(self, stage: str) -> None:
        scores = segmentation_scores(self.stats[f"{stage}_stats"].compute())  # synchronised over DDP ranks
        for name in self.metric_names:
            self.log(f"{stage}/{name}", scores[name].float(), prog_bar=name == self.metric_names[0])
        self.stats[f"{stage}_stats"].reset()

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    @override
    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    @override
    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Class maps of the images; prediction batches need no labels."""
        if isinstance(batch, dict):
            x = batch["image"]
        else:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            if self.spatial_dims == 2 and x.dim() == 5:  # (B, L, C, H, W) consecutive frames, as in unpack()
                x = x.flatten(0, 1)
        return self.infer(torch.as_tensor(x).float()).argmax(1)

    @override
    def configure_optimizers(self) -> Any:
        return self.optimizers_from_factories()
