"""True AnalogNAS objectives of any space's architectures, by training each with :class:`AnalogModule`.

For every architecture: build it from the space, train ``digital_epochs`` in floating point then ``hwa_epochs``
hardware-aware on the tiles (thesis §5.3.2: "trained digitally first, then converted and HWA-retrained"), program
and drift it ``trials`` times, and read on the DataModule's validation set, in accuracy points (%):
``acc_1d``, ``acc_30d``, ``avm`` = acc(1 s) − acc(30 d) and ``sigma_1d``. As a search evaluator it gives the
constrained EA its surrogate checks, and a random/LHS search with it collects the surrogate's training data
(``history.csv`` has the columns :class:`~hwnas_pl.surrogates.AnalogSurrogate` reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from aihwkit.optim import AnalogSGD

from hwnas_pl.analog.drift import DAY, MONTH, SECOND, drift_accuracy
from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.base import register_cost_model
from hwnas_pl.evaluators.training import TrainingEvaluator
from hwnas_pl.modules.analog_module import AnalogModule
from hwnas_pl.spaces.base import SearchSpace


@register_cost_model("analog_training")
class AnalogTrainingEvaluator(TrainingEvaluator):
    """Trains each architecture on analog tiles and measures its drift (slow: one training per architecture).

    Args:
        space: the search space.
        datamodule: the data (``setup("fit")`` is called once); accuracy is measured on its validation loader.
        num_classes, input_shape: of the networks built from the space.
        preset: analog preset of :class:`AnalogModule`.
        digital_epochs: floating-point epochs before HWA training.
        hwa_epochs: hardware-aware epochs.
        lr: AnalogSGD learning rate (momentum 0.9, weight decay 5e-4, cosine schedule; thesis §5.4 CIFAR recipe).
        trials: programmings per drift measurement.
        seed: seeds training (``seed_everything``) and the drift trials, the same for every architecture.
        accelerator: Lightning accelerator of the training runs.
        limit_train_batches: batches per epoch (a fraction or a count; Lightning's meaning), for quick proxies.
    """

    directions = {"acc_1d": "max", "acc_30d": "max", "avm": "min", "sigma_1d": "min"}

    def __init__(
        self,
        space: SearchSpace,
        datamodule: pl.LightningDataModule,
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        preset: str = "standard_hwa_torch",
        digital_epochs: int = 2,
        hwa_epochs: int = 2,
        lr: float = 0.05,
        trials: int = 3,
        seed: int = 0,
        accelerator: str = "cpu",
        limit_train_batches: float | int = 1.0,
    ) -> None:
        super().__init__(space, datamodule, num_classes, input_shape, seed, accelerator, limit_train_batches)
        if digital_epochs < 0 or hwa_epochs < 1 or trials < 2:
            raise ConfigError(
                "AnalogTrainingEvaluator needs digital_epochs >= 0, hwa_epochs >= 1 and trials >= 2 (sigma needs two); "
                f"got {digital_epochs}, {hwa_epochs} and {trials}."
            )
        self.preset, self.digital_epochs, self.hwa_epochs, self.lr = preset, digital_epochs, hwa_epochs, lr
        self.trials = trials

    def max_epochs(self) -> int:
        return self.digital_epochs + self.hwa_epochs

    def build_module(self, arch: Any) -> AnalogModule:
        epochs = self.max_epochs()
        return AnalogModule(
            backbone=lambda num_classes, input_shape: self.space.build(arch, num_classes, input_shape),
            num_classes=self.num_classes,
            input_shape=self.input_shape,
            preset=self.preset,
            digital_epochs=self.digital_epochs,
            optimizer=lambda params: AnalogSGD(params, lr=self.lr, momentum=0.9, weight_decay=5e-4),
            scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs),
        )

    def metrics_of(self, module: AnalogModule, arch: Any) -> dict[str, float]:
        """Drift metrics of the trained network in accuracy points."""
        times = [SECOND, DAY, MONTH]
        result = drift_accuracy(module.net, self.datamodule.val_dataloader, times, self.trials, self.seed)
        return {"acc_1d": 100.0 * result.at(DAY), "acc_30d": 100.0 * result.at(MONTH), "avm": 100.0 * result.avm(),
                "sigma_1d": 100.0 * result.sigma_1d()}  # fmt: skip
