"""Evaluators that train each architecture with a Lightning Trainer and return metrics of the trained network.

:class:`TrainingEvaluator` holds what every training-based evaluator shares: the DataModule (prepared once), the
seed (``seed_everything`` before each architecture, so the same network measures the same), the accelerator and
this process's device in a sharded search (:meth:`place`), and the Trainer. Subclasses say which LightningModule
trains an architecture (:meth:`TrainingEvaluator.build_module`), for how many epochs, and what to measure on the
trained module (:meth:`TrainingEvaluator.metrics_of`). Slow by nature: one training per architecture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl

from hwnas_pl.evaluators.base import CostModel
from hwnas_pl.spaces.base import SearchSpace


class TrainingEvaluator(CostModel):
    """Base class: train ``arch`` with :meth:`build_module` for :meth:`max_epochs`, then :meth:`metrics_of` it.

    Args:
        space: the search space.
        datamodule: the data (``prepare_data``/``setup("fit")`` once); training uses its train loader.
        num_classes, input_shape: of the networks built from the space.
        seed: ``seed_everything`` before each architecture.
        accelerator: Lightning accelerator of the training runs.
        limit_train_batches: batches per epoch (a fraction or a count; Lightning's meaning), for quick proxies.
    """

    def __init__(
        self,
        space: SearchSpace,
        datamodule: pl.LightningDataModule,
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        seed: int = 0,
        accelerator: str = "cpu",
        limit_train_batches: float | int = 1.0,
    ) -> None:
        super().__init__(space)
        self.datamodule, self.num_classes, self.input_shape = datamodule, num_classes, tuple(input_shape)
        self.seed, self.accelerator, self.limit_train_batches = seed, accelerator, limit_train_batches
        self.devices: int | list[int] = 1
        self._ready = False

    # ------------------------------------------------------------------ TO BE OVERWRITTEN
    def build_module(self, arch: Any) -> pl.LightningModule:
        """The LightningModule that trains ``arch``."""
        raise NotImplementedError

    def max_epochs(self) -> int:
        raise NotImplementedError

    def metrics_of(self, module: pl.LightningModule, arch: Any) -> dict[str, float]:
        """The evaluator's metrics (its :attr:`directions`) of the trained ``module``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def place(self, device: str) -> None:
        """In a sharded search, train on this process's GPU (``cuda:N`` -> ``devices=[N]``) unless on CPU."""
        if device.startswith("cuda") and self.accelerator in ("gpu", "cuda", "auto"):
            self.devices = [int(device.partition(":")[2] or 0)]

    def prepare(self) -> None:
        """``prepare_data`` and ``setup("fit")`` of the DataModule, once."""
        if not self._ready:
            self.datamodule.prepare_data()
            self.datamodule.setup("fit")
            self._ready = True

    def train(self, arch: Any) -> pl.LightningModule:
        """``arch`` trained from the seed on the DataModule's train loader (no logging, no checkpoints).

        The trained module is returned on the device it trained on (Lightning's teardown moves it to the CPU), so
        that :meth:`metrics_of` measures it there.
        """
        self.prepare()
        pl.seed_everything(self.seed, verbose=False)
        module = self.build_module(arch)
        trainer = pl.Trainer(
            max_epochs=self.max_epochs(),
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
        return module.to(trainer.strategy.root_device)

    def measure(self, arch: Any) -> dict[str, float]:
        """Train ``arch`` and return its metrics."""
        return self.metrics_of(self.train(arch), arch)

    def _evaluate(self, archs: list[Any], out: dict[str, Any]) -> None:
        rows = [self.measure(a) for a in archs]
        for metric in self.directions:
            out[metric] = [row[metric] for row in rows]
