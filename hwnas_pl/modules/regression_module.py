"""Regression around any backbone, e.g. heart rate from PPG windows (TROIKA), scored by the average absolute error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics import MeanAbsoluteError, MeanMetric, MinMetric
from typing_extensions import override

from hwnas_pl.errors import ConfigError
from hwnas_pl.modules.base import HWNASModule
from hwnas_pl.modules.classifier_module import BackboneFactory, build_backbone

LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss, "huber": F.smooth_l1_loss}


class RegressionModule(HWNASModule):
    """Regression with an L1/MSE/Huber loss; logs the average absolute error (AAE) of each stage.

    Logs ``train/loss``, ``val/loss``, ``val/aae``, ``val/aae_best``, ``test/aae`` (in the targets' unit, e.g.
    BPM: AAE = mean |ŷ − y|).

    Args:
        backbone: see :func:`~hwnas_pl.modules.classifier_module.build_backbone` (e.g. ``ppgnet``).
        num_classes: number of regression outputs (linked from the DataModule by the CLI).
        input_shape: shape of one sample (linked from the DataModule by the CLI).
        loss: ``l1``, ``mse`` or ``huber``.
        target_offset, target_scale: the network predicts ``(y − offset) / scale`` (e.g. 80 and 30 for BPM), which
            keeps the loss of a fresh network small; predictions and metrics are in the targets' unit.
        optimizer, scheduler: as in :class:`~hwnas_pl.modules.ClassifierModule`.
    """

    def __init__(
        self,
        backbone: str | BackboneFactory = "ppgnet",
        num_classes: int = 1,
        input_shape: Sequence[int] = (5, 1000),
        loss: str = "l1",
        target_offset: float = 0.0,
        target_scale: float = 1.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"RegressionModule loss must be one of {sorted(LOSSES)}, got '{loss}'.")
        if target_scale <= 0:
            raise ConfigError(f"RegressionModule target_scale must be positive, got {target_scale}.")
        self.save_plain_hyperparameters()
        self.net = build_backbone(backbone, num_classes, input_shape)
        self.loss_fn = LOSSES[loss]
        self.offset, self.scale = target_offset, target_scale
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()
        self.val_aae, self.test_aae = MeanAbsoluteError(), MeanAbsoluteError()
        self.val_aae_best = MinMetric()
        self.val_aae_best.persistent(True)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions in the targets' unit."""
        return self.net(x) * self.scale + self.offset

    def _shared_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        raw = self.net(x)
        if raw.shape != y.shape:
            raise ConfigError(
                f"The backbone returned predictions of shape {tuple(raw.shape)} for targets of shape {tuple(y.shape)}; "
                "expected the same shape."
            )
        loss = self.loss_fn(raw, (y - self.offset) / self.scale)
        return loss, raw.detach() * self.scale + self.offset, y

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, _, y = self._shared_step(batch)
        self.check_finite(loss)
        self.train_loss(loss, weight=y.shape[0])
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, pred, y = self._shared_step(batch)
        self.val_loss(loss, weight=y.shape[0])
        self.val_aae(pred, y)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True)
        self.log("val/aae", self.val_aae, on_step=False, on_epoch=True, prog_bar=True)

    @override
    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_aae_best(self.val_aae.compute())
        self.log("val/aae_best", self.val_aae_best.compute(), sync_dist=True)

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        _, pred, y = self._shared_step(batch)
        self.test_aae(pred, y)
        self.log("test/aae", self.test_aae, on_step=False, on_epoch=True)

    @override
    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self(batch[0] if isinstance(batch, (list, tuple)) else batch)

    @override
    def configure_optimizers(self) -> Any:
        return self.optimizers_from_factories()
