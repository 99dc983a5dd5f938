"""Tabular NAS-Bench-201 (CIFAR-10) metrics from the ``analog-nasbench`` package, for all 15,625 cells.

Per cell, accuracies in %: ``baseline_acc`` (digital training), ``ptq_acc`` and ``qat_acc`` (8-bit post-training
and quantisation-aware), ``noisy_acc`` (digital weights under analog noise), ``analog_acc`` (hardware-aware
analog training), and the drift accuracies of the digitally (``baseline_drift_*``) and HWA-trained
(``analog_drift_*``) networks at 60 s, 1 h, 1 day and 30 days after programming, with their standard deviations
(``*_std``) over the package's repeated trials.

The package's own loader imports ``pkg_resources``, which current setuptools no longer ships; this module reads its
``data.anb`` pickle directly, admitting only the two record classes it holds.
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.base import CostModel, register_cost_model
from hwnas_pl.pareto import non_dominated_fronts
from hwnas_pl.spaces.base import SearchSpace
from hwnas_pl.spaces.nasbench201 import NASBench201Space

DRIFT_TIMES = {60: "60s", 3600: "1h", 86400: "1d", 2592000: "30d"}
_SCALARS = ("baseline_accuracy", "ptq_accuracy", "qat_accuracy", "noisy_accuracy", "analog_accuracy")


def _metric_names() -> list[str]:
    names = [s.replace("_accuracy", "_acc") for s in _SCALARS]
    for kind in ("baseline", "analog"):
        for t in DRIFT_TIMES:
            names += [f"{kind}_drift_{t}", f"{kind}_drift_{t}_std"]
    return names


#: Every metric the table holds; all are accuracies in % (higher is better).
METRICS = tuple(_metric_names())


class _Record:
    """Stand-in for the package's ``Architecture`` and ``DriftMeasurement`` classes (plain attribute holders)."""


class _TableUnpickler(pickle.Unpickler):
    _ALLOWED = {("copyreg", "_reconstructor"), ("builtins", "object")}

    def find_class(self, module: str, name: str) -> Any:
        if module == "analognasbench.data" and name in ("Architecture", "DriftMeasurement"):
            return _Record
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected class {module}.{name}")


def default_table_path() -> Path:
    """``data.anb`` inside the installed ``analog-nasbench`` package (found without importing it)."""
    spec = importlib.util.find_spec("analognasbench")
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError("The analog-nasbench package is not installed; expected it among hwnas_pl's dependencies.")
    return Path(next(iter(spec.submodule_search_locations))) / "data.anb"


class NASBench201Table:
    """Query NAS-Bench-201 cells by string, op-name tuple, ``analog-nasbench`` tuple or index.

    Args:
        path: the ``data.anb`` file; default: the one shipped in ``analog-nasbench``.

    Example:
        >>> table = NASBench201Table()
        >>> round(table.query("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
        ...                   "nor_conv_3x3~2|", "baseline_acc"), 2)
        93.99
        >>> len(table), table.query((1, 1, 1, 1, 1, 1), "analog_acc")  # all 'none': chance level
        (15625, 10.0)
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.space = NASBench201Space()
        self.path = Path(path) if path is not None else default_table_path()
        if not self.path.is_file():
            raise UserInputError(
                f"NAS-Bench-201 table '{self.path}' does not exist; expected analog-nasbench's data.anb."
            )
        try:
            with self.path.open("rb") as f:
                records = _TableUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as err:
            raise UserInputError(
                f"NAS-Bench-201 table '{self.path}' could not be read ({err}); expected data.anb."
            ) from None
        if not isinstance(records, Mapping) or len(records) != self.space.size():
            raise UserInputError(
                f"NAS-Bench-201 table '{self.path}' holds {len(records) if isinstance(records, Mapping) else 0} cells; "
                f"expected {self.space.size()}."
            )
        self._columns = {name: np.full(self.space.size(), np.nan) for name in METRICS}
        indices = self.space.anb_indices(list(records))
        for i, record in zip(indices, records.values()):
            for attr in _SCALARS:
                self._columns[attr.replace("_accuracy", "_acc")][i] = float(getattr(record, attr))
            for kind in ("baseline", "analog"):
                for t in DRIFT_TIMES:
                    drift = getattr(record, f"{kind}_drift_{t}")
                    self._columns[f"{kind}_drift_{t}"][i] = float(drift.value)
                    self._columns[f"{kind}_drift_{t}_std"][i] = float(drift.uncertainty)

    def __len__(self) -> int:
        return self.space.size()

    @property
    def metrics(self) -> tuple[str, ...]:
        """Names of the metrics the table holds."""
        return METRICS

    def index_of(self, arch: Any) -> int:
        """Index (enumeration order of :class:`NASBench201Space`) of a string, op tuple, analog tuple or index.

        Raises:
            ConfigError: when ``arch`` is not a cell of the space (unknown op, wrong length, index out of range).
        """
        if isinstance(arch, (int, np.integer)):
            if not 0 <= int(arch) < len(self):
                raise ConfigError(f"NAS-Bench-201 has {len(self)} cells; index {int(arch)} is out of range.")
            return int(arch)
        if (
            isinstance(arch, Sequence)
            and not isinstance(arch, str)
            and arch
            and all(isinstance(a, (int, np.integer)) for a in arch)
        ):
            return self.space.index(self.space.from_anb_tuple(arch))
        return self.space.index(arch)

    def _check_metric(self, metric: str) -> None:
        if metric not in self._columns:
            raise ConfigError(f"Unknown NAS-Bench-201 metric '{metric}'; expected one of: {', '.join(METRICS)}.")

    def query(self, arch: Any, metric: str | None = None) -> float | dict[str, float]:
        """One metric of ``arch``, or all of them as a dict."""
        i = self.index_of(arch)
        if metric is None:
            return {name: float(col[i]) for name, col in self._columns.items()}
        self._check_metric(metric)
        return float(self._columns[metric][i])

    def column(self, metric: str, archs: Sequence[Any] | None = None) -> np.ndarray:
        """``metric`` for ``archs`` (default: every cell, in enumeration order)."""
        self._check_metric(metric)
        if archs is None:
            return self._columns[metric].copy()
        return self._columns[metric][[self.index_of(a) for a in archs]]

    def pareto_front(self, objectives: Mapping[str, str], values: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Indices of the exact Pareto front of the whole space for ``objectives`` (metric -> ``"min"``/``"max"``).

        Args:
            objectives: two or three metrics with their directions, e.g. ``{"baseline_acc": "max", "latency_ms":
                "min"}``.
            values: columns over all cells for objectives that are not table metrics (e.g. a cost model's
                ``latency_ms`` for every cell).
        """
        values = values or {}
        columns = []
        for name in objectives:
            if name in values:
                col = np.asarray(values[name], dtype=float)
                if col.shape != (len(self),):
                    raise ConfigError(
                        f"Objective '{name}' has {col.shape} values; expected one per cell ({len(self)})."
                    )
                columns.append(col)
            else:
                columns.append(self.column(name))
        return np.sort(non_dominated_fronts(np.stack(columns, axis=1), list(objectives.values()))[0])


@register_cost_model("nasbench201_table")
class NASBench201TableModel(CostModel):
    """Table metrics as a cost model (all accuracies, maximised), so searches read them like any other objective.

    Args:
        space: a :class:`~hwnas_pl.spaces.NASBench201Space`.
        metrics: which of :data:`METRICS` to return (default: ``baseline_acc``).
        path: the ``data.anb`` file (default: the one shipped in ``analog-nasbench``).
    """

    def __init__(self, space: SearchSpace, metrics: Sequence[str] = ("baseline_acc",), path: str | None = None) -> None:
        if not isinstance(space, NASBench201Space):
            name = getattr(space, "name", type(space).__name__)
            raise ConfigError(f"The NAS-Bench-201 table answers for the nasbench201 space only, not '{name}'.")
        super().__init__(space)
        self.table = _load_table(path)
        for m in metrics:
            self.table._check_metric(m)
        self.directions = {m: "max" for m in metrics}

    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        for metric in self.directions:
            out[metric] = self.table.column(metric, archs)


@register_cost_model("nasbench201_analog")
class NASBench201AnalogModel(CostModel):
    """The table's drift columns as AnalogNAS's objectives (thesis §5.3, Eq. 5.3), in accuracy points (%).

    ``acc_1d`` and ``acc_30d`` (maximised): mean accuracy 1 day and 30 days after programming; ``avm``
    (minimised): ``acc(60 s) − acc(30 d)``, the table's earliest time standing in for the thesis's 1 s;
    ``sigma_1d`` (minimised): the standard deviation of the 1-day accuracy over the package's trials.

    Args:
        space: a :class:`~hwnas_pl.spaces.NASBench201Space`.
        training: ``"hwa"`` (hardware-aware trained, the ``analog_drift_*`` columns) or ``"digital"`` (digitally
            trained weights mapped to analog, ``baseline_drift_*``).
        path: the ``data.anb`` file (default: the one shipped in ``analog-nasbench``).
    """

    directions = {"acc_1d": "max", "acc_30d": "max", "avm": "min", "sigma_1d": "min"}

    def __init__(self, space: SearchSpace, training: str = "hwa", path: str | None = None) -> None:
        if not isinstance(space, NASBench201Space):
            name = getattr(space, "name", type(space).__name__)
            raise ConfigError(f"The NAS-Bench-201 table answers for the nasbench201 space only, not '{name}'.")
        if training not in ("hwa", "digital"):
            raise ConfigError(f"Unknown training '{training}'; expected 'hwa' or 'digital'.")
        super().__init__(space)
        self.table = _load_table(path)
        self.prefix = "analog_drift" if training == "hwa" else "baseline_drift"

    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        column = lambda t: self.table.column(f"{self.prefix}_{t}", archs)  # noqa: E731
        out["acc_1d"] = column(86400)
        out["acc_30d"] = column(2592000)
        out["avm"] = column(60) - out["acc_30d"]
        out["sigma_1d"] = column("86400_std")


@functools.lru_cache(maxsize=4)
def _load_table(path: str | None) -> NASBench201Table:
    return NASBench201Table(path)
