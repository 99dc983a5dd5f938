"""Architectures as a dataset: an LHS sample of a search space with their measured objectives (HW-PR-NAS §3.2).

:class:`ArchitectureDataModule` draws ``n_train + n_val`` distinct architectures of a space by Latin-hypercube
sampling (Algorithm 1: "sample from the benchmark with LHS"), measures every objective with the given cost models
(a table, a LUT, the analytic counts, the analog table) or reads them from a CSV (``arch`` column + one column per
metric), and encodes them once (:func:`~hwnas_pl.nn.architecture_encoders.encode_architectures`, statistics from the
training split). A sample is ``(views, objectives)``: the encoder's tensors and the float vector of
:attr:`ArchitectureDataModule.metrics`. ``devices`` names the hardware platforms, each with its objectives (e.g.
``{cpu: {baseline_acc: max, latency_ms: min}}``): one predictor head each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hwnas_pl.datamodules.base import HWNASDataModule
from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.base import CostModel, CostModelFactory
from hwnas_pl.evaluators.tables import TableCostModel
from hwnas_pl.nn.architecture_encoders import encode_architectures
from hwnas_pl.spaces.base import SearchSpace


class ArchitectureSet(Dataset):
    """``(views, objectives)`` per architecture, from tensors built once."""

    def __init__(self, archs: list[Any], views: dict[str, torch.Tensor], objectives: np.ndarray) -> None:
        self.archs, self.views = archs, views
        self.objectives = torch.as_tensor(objectives, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.archs)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {k: v[i] for k, v in self.views.items()}, self.objectives[i]


class ArchitectureDataModule(HWNASDataModule):
    """An LHS sample of ``space`` with its objectives per device (see the module docstring).

    Args:
        space: the search space.
        devices: platform -> {metric: "min"|"max"}; the heads, in order.
        evaluators: cost models (or factories called with the space) computing the metrics.
        table: a CSV with an ``arch`` column and metric columns; its rows are then the sample, and ``evaluators``
            measure the metrics it has no column for (e.g. trained FBNet accuracies + HW-NAS-Bench's latencies).
        n_train, n_val: architectures in each split (thesis: 500 and 100).
        sampling: ``"lhs"`` or ``"uniform"``.
        seed: of the sample (and of the loaders' shuffling).
        batch_size: architectures per batch (thesis: 18).
        input_shape, num_classes: of the networks whose features the encoder sees.
    """

    def __init__(
        self,
        space: SearchSpace,
        devices: Mapping[str, Mapping[str, str]],
        evaluators: Sequence[CostModel | CostModelFactory] = (),
        table: str | Path | None = None,
        n_train: int = 500,
        n_val: int = 100,
        sampling: str = "lhs",
        seed: int = 0,
        batch_size: int = 18,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        if not devices:
            raise ConfigError("ArchitectureDataModule needs devices: {name: {metric: min|max, ...}, ...}.")
        bad = [(d, m, v) for d, obj in devices.items() for m, v in obj.items() if v not in ("min", "max")]
        if bad or any(len(obj) < 1 for obj in devices.values()):
            raise ConfigError(f"Device objectives map metrics to 'min' or 'max'; got {bad[0] if bad else devices}.")
        if table is None and not evaluators:
            raise ConfigError("ArchitectureDataModule needs evaluators, a table, or both (the table's rows as the "
                              "sample, evaluators for the metrics it lacks).")  # fmt: skip
        if n_train < 2 or n_val < 0:
            raise ConfigError(f"ArchitectureDataModule needs n_train >= 2 and n_val >= 0, got {n_train}, {n_val}.")
        self.space = space
        self.devices = {str(d): dict(obj) for d, obj in devices.items()}
        self.metrics = list(dict.fromkeys(m for obj in self.devices.values() for m in obj))
        self.evaluators = [e if isinstance(e, CostModel) else e(space) for e in evaluators]
        self.table = None if table is None else Path(table)
        self.n_train, self.n_val, self.sampling, self.seed = n_train, n_val, sampling, seed
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.stats: dict[str, Any] | None = None
        self.archs: list[Any] = []
        self._table_model: TableCostModel | None = None

    def sample(self) -> list[Any]:
        """``n_train + n_val`` distinct architectures (the table's rows when the space is the table's)."""
        n = self.n_train + self.n_val
        rng = np.random.default_rng(self.seed)
        if self.table is not None:
            rows = self.table_model().archs
            if len(rows) < n:
                raise UserInputError(f"Table '{self.table}' has {len(rows)} architectures; {n} were asked for.")
            return [rows[i] for i in rng.permutation(len(rows))[:n]]
        archs: list[Any] = []
        for _ in range(100):
            archs = list(dict.fromkeys(archs + self.space.sample(n - len(archs), rng, self.sampling)))
            if len(archs) >= n:
                return archs[:n]
        raise ConfigError(f"The {self.space.name} space gave only {len(archs)} distinct architectures of {n}.")

    def table_model(self) -> TableCostModel:
        """The ``table`` as a cost model of the :attr:`metrics` no evaluator computes (all of them without evaluators).

        Read once; its errors name the file and column.
        """
        if self._table_model is None:
            directions = {m: d for obj in self.devices.values() for m, d in obj.items()}
            computed = {m for e in self.evaluators for m in e.directions}
            own = {m: directions[m] for m in self.metrics if m not in computed}
            self._table_model = TableCostModel(self.space, self.table, own)
        return self._table_model

    def measure(self, archs: list[Any]) -> np.ndarray:
        """``(len(archs), len(metrics))`` objectives."""
        values: dict[str, np.ndarray] = {}
        for evaluator in [*([self.table_model()] if self.table is not None else []), *self.evaluators]:
            values.update(evaluator.evaluate(archs))
        missing = [m for m in self.metrics if m not in values]
        if missing:
            raise ConfigError(f"No evaluator computes '{missing[0]}'; they compute: {', '.join(values)}.")
        return np.stack([values[m] for m in self.metrics], axis=1)

    def build(self) -> None:
        self.archs = self.sample()
        objectives = self.measure(self.archs)
        train, val = self.archs[: self.n_train], self.archs[self.n_train :]
        views, stats = encode_architectures(self.space, train, self.input_shape, self.num_classes)
        # what encodes any other architecture the same way (the checkpoint keeps it; the cost model reads it)
        self.stats = {**stats, "space": self.space.name, "input_shape": list(self.input_shape),
                      "num_classes": self.num_classes}  # fmt: skip
        self.data_train = ArchitectureSet(train, views, objectives[: self.n_train])
        if val:
            val_views, _ = encode_architectures(self.space, val, self.input_shape, self.num_classes, self.stats)
            self.data_val = ArchitectureSet(val, val_views, objectives[self.n_train :])

    def val_dataloader(self):
        return self._loader(self.data_val, shuffle=False, split="val", batch_size=max(len(self.data_val or []), 1))
