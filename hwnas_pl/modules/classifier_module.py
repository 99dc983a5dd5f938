"""Image classification around any backbone: the package's, timm's, or a user's ``nn.Module`` class."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from hwnas_pl.errors import ConfigError
from hwnas_pl.modules.base import HWNASModule
from hwnas_pl.networks import create_backbone

#: A class or function called as ``factory(num_classes, input_shape)`` that returns the network. In YAML it is a
#: ``class_path`` with ``init_args`` for everything but those two, which are linked from the DataModule.
BackboneFactory = Callable[[int, Sequence[int]], nn.Module]


def build_backbone(backbone: str | BackboneFactory, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
    """Build ``backbone`` for ``num_classes`` outputs and inputs of ``input_shape``.

    Args:
        backbone: a package backbone name (``small_cnn``, ``mlp``), a timm model name (``resnet18``), a dotted path
            to a class or function taking ``(num_classes, input_shape)``, or such a factory itself.
        num_classes: number of output logits.
        input_shape: (channels, height, width) of one sample.
    """
    if callable(backbone):
        return backbone(num_classes, tuple(input_shape))
    if "." in backbone:
        module_name, _, attr = backbone.rpartition(".")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            raise ConfigError(
                f"Backbone '{backbone}' could not be imported; expected a dotted path to a class or function taking "
                "(num_classes, input_shape)."
            ) from None
        return factory(num_classes, tuple(input_shape))
    return create_backbone(backbone, num_classes, input_shape)


class ClassifierModule(HWNASModule):
    """Cross-entropy classification with per-stage torchmetrics accuracy.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/acc_best``, ``test/loss`` and
    ``test/acc``; ``predict_step`` returns class probabilities and predictions.

    Args:
        backbone: see :func:`build_backbone`.
        num_classes: number of classes (linked from the DataModule by the CLI).
        input_shape: (channels, height, width) of one sample (linked from the DataModule by the CLI).
        optimizer: optimizer factory called with the parameters.
        scheduler: learning-rate scheduler factory called with the optimizer, stepped every epoch;
            ``ReduceLROnPlateau`` monitors ``val/loss``.
        label_smoothing: label smoothing of the cross-entropy.
    """

    def __init__(
        self,
        backbone: str | BackboneFactory = "small_cnn",
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"ClassifierModule needs num_classes >= 2, got {num_classes}.")
        self.save_plain_hyperparameters()
        self.net = build_backbone(backbone, num_classes, input_shape)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_smoothing = label_smoothing
        self.num_classes = num_classes
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # the best accuracy so far survives a resume

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _shared_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        expected = (y.shape[0], self.num_classes)
        if tuple(logits.shape) != expected:
            raise ConfigError(
                f"The backbone returned logits of shape {tuple(logits.shape)} for a batch of {y.shape[0]} samples; "
                f"expected (batch, num_classes) = {expected}."
            )
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return loss, logits, y

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits, y = self._shared_step(batch)
        self.check_finite(loss)
        self.train_loss(loss, weight=y.shape[0])
        self.train_acc(logits, y)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, y = self._shared_step(batch)
        self.val_loss(loss, weight=y.shape[0])
        self.val_acc(logits, y)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    @override
    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # the sanity check's few batches are not an epoch's accuracy
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, y = self._shared_step(batch)
        self.test_loss(loss, weight=y.shape[0])
        self.test_acc(logits, y)
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)

    @override
    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        probs = self(x).softmax(dim=-1)
        return {"probs": probs, "preds": probs.argmax(dim=-1)}

    @override
    def configure_optimizers(self) -> Any:
        return self.optimizers_from_factories()
