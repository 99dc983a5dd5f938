"""True AnalogNAS objectives of any space's architectures, by training each with :class:`AnalogModule`.

For every architecture: build it from the space, train ``digital_epochs`` in floating point then ``hwa_epochs``
hardware-aware on the tiles (thesis §5.3.2: "trained digitally first, then converted and HWA-retrained"), program
and drift it ``trials`` times, and read on the DataModule's validation set, in accuracy points (%):
``acc_1d``, ``acc_30d``, ``avm`` = acc(1 s) − acc(30 d) and ``sigma_1d``. As a search evaluator it gives the
constrained EA its surrogate checks, and a random/LHS search with it collects the surrogate's training data
(``history.csv`` has the columns :class:`~hwnas_pl.surrogates.AnalogSurrogate` reads).

With ``augment: {weight_noise: [0.1, 0.3], tile_size: [256, 512]}`` each architecture is also trained and measured
under every combination of those values (thesis §5.3.2's augmentation), and every measurement, the operating
point's included, is appended to ``augment_csv`` with the ``weight_noise`` and ``tile_size`` it was made under:
the training data of an augmented surrogate (``AnalogSurrogate(conditions=...)``). The search's objectives are
the operating point's.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.parameters.enums import WeightModifierType

from hwnas_pl.analog.drift import DAY, MONTH, SECOND, drift_accuracy
from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.base import register_cost_model
from hwnas_pl.evaluators.training import TrainingEvaluator
from hwnas_pl.modules.analog_module import AnalogModule
from hwnas_pl.spaces.base import SearchSpace
from hwnas_pl.surrogates.analog import CONDITIONS


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
        tile_size, weight_noise: override the preset (the operating point).
        augment: values of ``weight_noise`` and/or ``tile_size`` to measure every architecture under as well.
        augment_csv: the CSV every measurement is appended to (required with ``augment``).
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
        tile_size: int | None = None,
        weight_noise: float | None = None,
        augment: Mapping[str, Sequence[float]] | None = None,
        augment_csv: str | None = None,
    ) -> None:
        super().__init__(space, datamodule, num_classes, input_shape, seed, accelerator, limit_train_batches)
        unknown = sorted(set(augment or {}) - set(CONDITIONS))
        if unknown:
            raise ConfigError(f"Unknown augment key '{unknown[0]}'; expected some of: {', '.join(CONDITIONS)}.")
        if augment and augment_csv is None:
            raise ConfigError("AnalogTrainingEvaluator augment needs augment_csv, the file its measurements go to.")
        self.tile_size, self.weight_noise = tile_size, weight_noise
        self.augment = {k: [float(v) for v in augment[k]] for k in CONDITIONS if k in (augment or {})}
        self.augment_csv = augment_csv
        self._condition: dict[str, float] = {}  # the overrides of the measurement in progress
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
        point = {"tile_size": self.tile_size, "weight_noise": self.weight_noise, **self._condition}
        return AnalogModule(
            backbone=lambda num_classes, input_shape: self.space.build(arch, num_classes, input_shape),
            num_classes=self.num_classes,
            input_shape=self.input_shape,
            preset=self.preset,
            tile_size=None if point["tile_size"] is None else int(point["tile_size"]),
            weight_noise=point["weight_noise"],
            digital_epochs=self.digital_epochs,
            optimizer=lambda params: AnalogSGD(params, lr=self.lr, momentum=0.9, weight_decay=5e-4),
            scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs),
        )

    def measure(self, arch: Any) -> dict[str, float]:
        """The operating point's metrics; with ``augment``, every combination's measurement goes to ``augment_csv``."""
        if not self.augment:
            return super().measure(arch)
        rows, measured = [], []
        grid = [dict(zip(self.augment, values)) for values in itertools.product(*self.augment.values())]
        for condition in [{}, *grid]:
            self._condition = condition
            try:
                module = self.train(arch)
            finally:
                self._condition = {}
            metrics = self.metrics_of(module, arch)
            cfg = module.rpu_config  # the values it was measured under, as the tiles had them
            noise = 0.0 if cfg.modifier.type == WeightModifierType.NONE else float(cfg.modifier.std_dev)
            row = {"weight_noise": noise, "tile_size": int(cfg.mapping.max_input_size)}
            rows.append({"arch": self.space.to_string(arch), **row, **metrics})
            measured.append(metrics)
        path = Path(self.augment_csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.is_file() or path.stat().st_size == 0
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(rows)
        return measured[0]  # the operating point's

    def metrics_of(self, module: AnalogModule, arch: Any) -> dict[str, float]:
        """Drift metrics of the trained network in accuracy points."""
        times = [SECOND, DAY, MONTH]
        result = drift_accuracy(module.net, self.datamodule.val_dataloader, times, self.trials, self.seed)
        return {"acc_1d": 100.0 * result.at(DAY), "acc_30d": 100.0 * result.at(MONTH), "avm": 100.0 * result.avm(),
                "sigma_1d": 100.0 * result.sigma_1d()}  # fmt: skip
