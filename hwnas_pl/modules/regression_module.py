"""Regression around any backbone, e.g. heart rate from PPG windows (TROIKA), scored by the average absolute error."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from typing_extensions import override

from hwnas_pl.modules.base import HWNASModule
from hwnas_pl.modules.classifier_module import BackboneFactory, build_backbone
from hwnas_pl.modules.tasks import REGRESSION_LOSSES, RegressionTask
from hwnas_pl.nn.loss_terms import LossTerm
from hwnas_pl.nn.transforms import ModelTransform

LOSSES = REGRESSION_LOSSES


class RegressionModule(HWNASModule):
    """Regression (:class:`~hwnas_pl.modules.tasks.RegressionTask`) with an L1/MSE/Huber loss; logs the AAE.

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
        loss_terms, transforms: as in :class:`~hwnas_pl.modules.ClassifierModule`.
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
        loss_terms: Sequence[LossTerm] | None = None,
        transforms: Sequence[ModelTransform] | None = None,
    ) -> None:
        super().__init__()
        task = RegressionTask(num_classes, input_shape, loss, target_offset, target_scale)
        self.save_plain_hyperparameters()
        self.compose(task, build_backbone(backbone, num_classes, input_shape), loss_terms, transforms)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    # the task's settings, where older code read them on the module
    loss_fn = property(lambda self: self.task.loss_fn)
    offset = property(lambda self: self.task.offset)
    scale = property(lambda self: self.task.scale)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions in the targets' unit."""
        return self.task.to_unit(self.net(x))
