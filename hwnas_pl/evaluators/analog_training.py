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
from hwnas_pl.evaluators.base import CostModel, register_cost_model
from hwnas_pl.modules.analog_module import AnalogModule
from hwnas_pl.spaces.base import SearchSpace


@register_cost_model("analog_training")
class AnalogTrainingEvaluator(CostModel):
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
        preset: str = "standard_hwa",
        digital_epochs: int = 2,
        hwa_epochs: int = 2,
        lr: float = 0.05,
        trials: int = 3,
        seed: int = 0,
        accelerator: str = "cpu",
        limit_train_batches: float | int = 1.0,
    ) -> None:
        super().__init__(space)
        if digital_epochs < 0 or hwa_epochs < 1 or trials < 2:
            raise ConfigError(
                "AnalogTrainingEvaluator needs digital_epochs >= 0, hwa_epochs >= 1 and trials >= 2 (sigma needs two); "
                f"got {digital_epochs}, {hwa_epochs} and {trials}."
            )
        self.datamodule, self.num_classes, self.input_shape = datamodule, num_classes, tuple(input_shape)
        self.preset, self.digital_epochs, self.hwa_epochs, self.lr = preset, digital_epochs, hwa_epochs, lr
        self.trials, self.seed, self.accelerator = trials, seed, accelerator
        self.limit_train_batches = limit_train_batches
        self.devices: int | list[int] = 1
        self._ready = False

    def place(self, device: str) -> None:
        """In a sharded search, train on this process's GPU (``cuda:N`` -> ``devices=[N]``) unless on CPU."""
        if device.startswith("cuda") and self.accelerator in ("gpu", "cuda", "auto"):
            self.devices = [int(device.partition(":")[2] or 0)]

    def _module(self, arch: Any) -> AnalogModule:
        epochs = self.digital_epochs + self.hwa_epochs
        return AnalogModule(
            backbone=lambda num_classes, input_shape: self.space.build(arch, num_classes, input_shape),
            num_classes=self.num_classes,
            input_shape=self.input_shape,
            preset=self.preset,
            digital_epochs=self.digital_epochs,
            optimizer=lambda params: AnalogSGD(params, lr=self.lr, momentum=0.9, weight_decay=5e-4),
            scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs),
        )

    def measure(self, arch: Any) -> dict[str, float]:
        """Train ``arch`` and return its drift metrics in accuracy points."""
        if not self._ready:
            self.datamodule.prepare_data()
            self.datamodule.setup("fit")
            self._ready = True
        pl.seed_everything(self.seed, verbose=False)
        module = self._module(arch)
        trainer = pl.Trainer(
            max_epochs=self.digital_epochs + self.hwa_epochs,
            accelerator=self.accelerator,
            devices=self.devices,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            limit_train_batches=self.limit_train_batches,
        )
        trainer.fit(module, train_dataloaders=self.datamodule.train_dataloader())
        times = [SECOND, DAY, MONTH]
        result = drift_accuracy(module.net, self.datamodule.val_dataloader, times, self.trials, self.seed)
        return {"acc_1d": 100.0 * result.at(DAY), "acc_30d": 100.0 * result.at(MONTH), "avm": 100.0 * result.avm(),
                "sigma_1d": 100.0 * result.sigma_1d()}  # fmt: skip

    def _evaluate(self, archs: list[Any], out: dict[str, Any]) -> None:
        rows = [self.measure(a) for a in archs]
        for metric in self.directions:
            out[metric] = [row[metric] for row in rows]
