"""Semantic segmentation (2-D frames, 3-D volumes, or 2-D slices of volumes) with mIoU, F1/Dice and pixel accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from hwnas_pl.modules.base import HWNASModule
from hwnas_pl.modules.classifier_module import BackboneFactory, build_backbone
from hwnas_pl.modules.tasks import SEGMENTATION_METRICS, SegmentationTask, segmentation_scores
from hwnas_pl.nn.loss_terms import LossTerm
from hwnas_pl.nn.transforms import ModelTransform

__all__ = ["METRICS", "SegmentationModule", "segmentation_scores"]

METRICS = SEGMENTATION_METRICS


class SegmentationModule(HWNASModule):
    """Per-pixel (per-voxel) classification (:class:`~hwnas_pl.modules.tasks.SegmentationTask`) around any backbone.

    Batches are ``(image, label)`` with labels ``(B, H, W)``, consecutive-frame items ``(B, L, 3, H, W)`` /
    ``(B, L, H, W)`` (flattened to ``B·L`` frames), or MONAI dicts ``{"image", "label"}`` with ``(B, 1, ...)`` labels.
    Validation and test images larger than ``roi_size`` are inferred with a sliding window; a 2-D network given 3-D
    volumes predicts them slice by slice. Logs ``{stage}/loss`` and ``{stage}/{metric}`` for ``metrics`` from
    :func:`segmentation_scores`.

    Args:
        backbone: see :func:`~hwnas_pl.modules.classifier_module.build_backbone` (e.g.
            ``hwnas_pl.nn.segmentation.UNet``).
        num_classes: classes including background (linked from the DataModule by the CLI).
        input_shape: (channels, *spatial) of one training sample (linked from the DataModule by the CLI).
        loss: ``ce`` or ``dice_ce`` (MONAI's DiceCELoss; no ignore index).
        ignore_index: label value excluded from loss and metrics.
        metrics: names among ``miou``, ``f1``, ``dice``, ``pixel_acc``.
        roi_size: sliding-window size for evaluation; ``None``: the training sample's spatial size.
        optimizer, scheduler: as in :class:`~hwnas_pl.modules.ClassifierModule`.
        loss_terms, transforms: as in :class:`~hwnas_pl.modules.ClassifierModule`.
    """

    def __init__(
        self,
        backbone: str | BackboneFactory = "hwnas_pl.nn.segmentation.UNet",
        num_classes: int = 2,
        input_shape: Sequence[int] = (3, 64, 64),
        loss: str = "ce",
        ignore_index: int = 255,
        metrics: Sequence[str] = ("miou", "f1"),
        roi_size: Sequence[int] | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        loss_terms: Sequence[LossTerm] | None = None,
        transforms: Sequence[ModelTransform] | None = None,
    ) -> None:
        super().__init__()
        task = SegmentationTask(num_classes, input_shape, loss, ignore_index, metrics, roi_size)
        self.save_plain_hyperparameters()
        self.compose(task, build_backbone(backbone, num_classes, input_shape), loss_terms, transforms)
        self.num_classes = num_classes
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    # the task's settings, where older code read them on the module
    ignore_index = property(lambda self: self.task.ignore_index)
    metric_names = property(lambda self: self.task.metric_names)
    spatial_dims = property(lambda self: self.task.spatial_dims)
    roi_size = property(lambda self: self.task.roi_size)

    def unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, C, *spatial), labels (N, *spatial) long)`` from any batch form the module accepts."""
        return self.task.unpack(batch)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for evaluation: slice by slice for a 2-D network on volumes, sliding window beyond ``roi_size``."""
        return self.task.infer(self.net, x)
