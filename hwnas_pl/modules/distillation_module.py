"""Label-free fine-tuning against the network's own dense outputs (beyond "Treasure What You Have")."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from hwnas_pl.models import BackboneFactory, build_backbone
from hwnas_pl.modules.base import HWNASModule
from hwnas_pl.modules.tasks import DistillationTask
from hwnas_pl.nn.loss_terms import LossTerm
from hwnas_pl.nn.reuse import from_reuse
from hwnas_pl.nn.transforms import ModelTransform


class DistillationModule(HWNASModule):
    """SA-training without labels: a camera's footage is enough.

    The network is built, its ``transforms`` applied (typically ``LoadWeights`` then ``ReuseTransform``), and the
    teacher is a frozen copy of it with every reuse layer unwrapped: the dense network the fine-tuning starts from.
    The student (reuse in the forward pass, straight-through gradients) learns to match the teacher's outputs
    (:class:`~hwnas_pl.modules.tasks.DistillationTask`), plus the ``loss_terms`` (Eq. 1 and Eq. 2's similarity
    regularizers), on unlabelled frames, pairs or clips (``VideoDataModule``). Logs ``{stage}/loss`` and
    ``{stage}/agreement`` (top-class agreement with the teacher). The teacher stays in eval mode and out of the
    optimiser; it is saved in checkpoints, so a resumed run distils from the same teacher.

    Args:
        backbone: see :func:`~hwnas_pl.models.build_backbone`.
        num_classes: outputs of the network (of a pre-trained model: its own, e.g. 1000).
        input_shape: (channels, height, width) of one frame.
        temperature: of the distillation's softmax.
        objective: ``kl`` (softened outputs) or ``nmse`` (the outputs themselves); see the task.
        optimizer: optimizer factory called with the student's parameters.
        scheduler: learning-rate scheduler factory, stepped every epoch.
        loss_terms: regularizers added to the loss (:class:`~hwnas_pl.nn.loss_terms.LossTerm`).
        transforms: applied to the built network in order (:class:`~hwnas_pl.nn.transforms.ModelTransform`).
    """

    def __init__(
        self,
        backbone: str | BackboneFactory = "resnet18",
        num_classes: int = 1000,
        input_shape: Sequence[int] = (3, 224, 224),
        temperature: float = 1.0,
        objective: str = "kl",
        optimizer: OptimizerCallable = torch.optim.SGD,
        scheduler: LRSchedulerCallable | None = None,
        loss_terms: Sequence[LossTerm] | None = None,
        transforms: Sequence[ModelTransform] | None = None,
    ) -> None:
        super().__init__()
        self.save_plain_hyperparameters()
        task = DistillationTask(num_classes, input_shape, temperature, objective)
        self.compose(task, build_backbone(backbone, num_classes, input_shape), loss_terms, transforms)
        teacher = from_reuse(copy.deepcopy(self.net)).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher
        task.teacher = teacher
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    def train(self, mode: bool = True) -> DistillationModule:
        """The student follows ``mode``; the teacher stays in eval mode (its BatchNorm statistics are fixed)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def configure_optimizers(self):
        return self.optimizers_from_factories([p for n, p in self.named_parameters() if not n.startswith("teacher.")])
