"""Image classification around any backbone: the package's, timm's, or a user's ``nn.Module`` class."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from hwnas_pl.errors import ConfigError
from hwnas_pl.models import BackboneFactory, build_backbone
from hwnas_pl.modules.base import HWNASModule
from hwnas_pl.modules.tasks import ClassificationTask
from hwnas_pl.nn.loss_terms import LossTerm
from hwnas_pl.nn.transforms import ModelTransform


class ClassifierModule(HWNASModule):
    """Cross-entropy classification (:class:`~hwnas_pl.modules.tasks.ClassificationTask`) around any backbone.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/acc_best``, ``test/loss`` and
    ``test/acc`` (and ``train/<name>`` of each loss term); ``predict_step`` returns class probabilities and
    predictions.

    Args:
        backbone: see :func:`build_backbone`.
        num_classes: number of classes (linked from the DataModule by the CLI).
        input_shape: (channels, height, width) of one sample (linked from the DataModule by the CLI).
        optimizer: optimizer factory called with the parameters.
        scheduler: learning-rate scheduler factory called with the optimizer, stepped every epoch;
            ``ReduceLROnPlateau`` monitors ``val/loss``.
        label_smoothing: label smoothing of the cross-entropy.
        loss_terms: regularizers added to the loss (:class:`~hwnas_pl.nn.loss_terms.LossTerm`).
        transforms: applied to the built network in order (:class:`~hwnas_pl.nn.transforms.ModelTransform`,
            e.g. :class:`~hwnas_pl.analog.transform.AnalogTransform`).
    """

    def __init__(
        self,
        backbone: str | BackboneFactory = "small_cnn",
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
        loss_terms: Sequence[LossTerm] | None = None,
        transforms: Sequence[ModelTransform] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"ClassifierModule needs num_classes >= 2, got {num_classes}.")
        self.save_plain_hyperparameters()
        task = ClassificationTask(num_classes, input_shape, label_smoothing)
        self.compose(task, build_backbone(backbone, num_classes, input_shape), loss_terms, transforms)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.num_classes = num_classes

    #: the task's setting, where older code read it on the module
    label_smoothing = property(lambda self: self.task.label_smoothing)
