"""The one cost-model interface every search uses, and the cost models that need no measurement.

A cost model maps a batch of architectures of one space to named arrays: ``evaluate(archs) -> {"latency_ms":
array, ...}`` (pymoo's ``Problem._evaluate`` habit: batched by default). Each metric has a direction in
:attr:`CostModel.directions` (``"min"`` for costs, ``"max"`` for accuracies), so searches build objectives without
sign mistakes. Subclasses fill ``out`` in ``_evaluate``; the public :meth:`CostModel.evaluate` validates the
architectures and the arrays.
"""

from __future__ import annotations

import csv
import functools
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.registry import Registry
from hwnas_pl.spaces.base import SearchSpace

COST_MODELS: Registry[CostModel] = Registry("cost model")


def register_cost_model(name: str):
    """Class decorator registering a cost model under ``name``."""
    return COST_MODELS.register(name)


#: the package's modules that register cost models without Lightning (timm's "import every model" habit, lazily:
#: they import this module, so it cannot import them at the top)
PLUGIN_MODULES = (
    "hwnas_pl.hardware.latency",
    "hwnas_pl.hardware.lut",
    "hwnas_pl.hardware.predictor",
    "hwnas_pl.benchmarks.nasbench201",
    "hwnas_pl.surrogates.analog",
)


def list_cost_models() -> list[str]:
    """Registered cost-model names, the package's plugins imported first.

    ``analog_training`` (:mod:`hwnas_pl.modules.analog_evaluator`) trains with Lightning and registers when that
    module is imported.
    """
    import importlib

    for name in PLUGIN_MODULES:
        importlib.import_module(name)
    return COST_MODELS.names()


def create_cost_model(name: str, space: SearchSpace, **kwargs: Any) -> CostModel:
    """The registered cost model ``name`` for ``space`` (``None`` keyword arguments dropped)."""
    list_cost_models()
    return COST_MODELS.create(name, space=space, **kwargs)


class CostModel(ABC):
    """Base class: ``evaluate(archs)`` returns one array per metric, of length ``len(archs)``.

    Args:
        space: the search space whose architectures are evaluated.
    """

    #: metric name -> "min" or "max"
    directions: Mapping[str, str] = {}

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    @property
    def metrics(self) -> tuple[str, ...]:
        """Names of the arrays :meth:`evaluate` returns."""
        return tuple(self.directions)

    def place(self, device: str) -> None:
        """Use ``device`` (this process's GPU in a sharded search, or ``"cpu"``) for work the model does itself.

        Default: nothing (tables, analytic counts and predictors need no device). Training-based evaluators
        train on it; a latency model measuring a GPU measures this process's one.
        """
        return None

    # ------------------------------------------------------------------ TO BE OVERWRITTEN
    @abstractmethod
    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        """Fill ``out[metric]`` with one value per architecture."""

    # ------------------------------------------------------------------ public API
    def evaluate(self, archs: Sequence[Any]) -> dict[str, np.ndarray]:
        """Metrics of ``archs`` (strings, op tuples or the space's values), one float array per metric.

        Raises:
            ConfigError: when an architecture is not of the space, or a metric comes back with the wrong length.
        """
        archs = [self.space.validate(a) for a in archs]
        out: dict[str, np.ndarray] = {}
        self._evaluate(archs, out)
        for name in self.metrics:
            values = np.asarray(out.get(name), dtype=float)
            if values.shape != (len(archs),):
                raise ConfigError(
                    f"{type(self).__name__} returned {values.shape} values of '{name}' for {len(archs)} architectures; "
                    "expected one per architecture."
                )
            out[name] = values
        return out


#: A cost-model class given in YAML by class_path and init_args, without the space (passed in when it is built).
CostModelFactory = Callable[[SearchSpace], CostModel]


def build_cost_model(
    factory: CostModelFactory, space: SearchSpace, input_shape: Sequence[int], num_classes: int
) -> CostModel:
    """``factory(space)``, passing the data's ``input_shape`` and ``num_classes`` when the class takes them.

    A cost model that prices one network input (a latency LUT, the analytic counts) must see the shape the model
    is trained on, so a config does not repeat it.
    """
    target = factory
    while isinstance(target, functools.partial):  # jsonargparse: partial(instantiator, cls, **init_args)
        target = next((a for a in reversed(target.args) if inspect.isclass(a)), target.func)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    extra = {"input_shape": tuple(int(s) for s in input_shape), "num_classes": int(num_classes)}
    return factory(space, **{k: v for k, v in extra.items() if k in params})


@register_cost_model("analytic")
class AnalyticCostModel(CostModel):
    r"""Exact ``flops``, ``macs``, ``params`` and ``memory_mb`` (float32 weights) for one input sample.

    Counted per op of the space's decomposition (:meth:`~hwnas_pl.spaces.base.SearchSpace.latency_ops`), each
    distinct op once, and summed: the whole NAS-Bench-201 space takes about a second.

    See :mod:`hwnas_pl.hardware.analytic` for what is counted: :math:`\mathrm{FLOPs} = 2\,\mathrm{MACs}` of the
    convolutions and linear layers.

    Args:
        space: the search space.
        input_shape: (channels, height, width) of one input.
        num_classes: classifier outputs.
    """

    directions = {"flops": "min", "macs": "min", "params": "min", "memory_mb": "min"}

    def __init__(self, space: SearchSpace, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10) -> None:
        super().__init__(space)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = num_classes

    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        counts = [self.space.count(a, self.num_classes, self.input_shape) for a in archs]
        counts = np.array([(c.macs, c.params) for c in counts], dtype=float).reshape(-1, 2)
        macs, params = counts[:, 0], counts[:, 1]
        out.update(macs=macs, flops=2 * macs, params=params, memory_mb=params * 4 / 2**20)


@register_cost_model("table")
class TableCostModel(CostModel):
    """Per-architecture metrics from a user's CSV or JSON file, so published device tables plug in.

    CSV: a header row with an ``arch`` column (the space's string) and one column per metric. JSON: a list of
    objects with ``arch`` and the metric keys, as ``pareto_front.json`` files are written.

    Args:
        space: the search space the strings belong to.
        path: the table file.
        directions: metric -> ``"min"``/``"max"`` for the columns to use (default: every column, minimised).
    """

    def __init__(self, space: SearchSpace, path: str | Path, directions: Mapping[str, str] | None = None) -> None:
        super().__init__(space)
        self.path = Path(path)
        if not self.path.is_file():
            raise UserInputError(
                f"Cost table '{self.path}' does not exist; expected a CSV or JSON file with an 'arch' column."
            )
        rows = self._read_rows()
        if not rows or "arch" not in rows[0]:
            raise UserInputError(
                f"Cost table '{self.path}' has no 'arch' column; expected one naming each architecture."
            )
        columns = [k for k in rows[0] if k != "arch"]
        self.directions = dict(directions) if directions else {c: "min" for c in columns}
        missing = [m for m in self.directions if m not in columns]
        if missing:
            raise ConfigError(f"Cost table '{self.path}' has no column '{missing[0]}'; its columns are {columns}.")
        self._values: dict[Any, dict[str, float]] = {}
        for line, row in enumerate(rows, start=2):
            arch = space.validate(str(row["arch"]))
            try:
                self._values[arch] = {m: float(row[m]) for m in self.directions}
            except (TypeError, ValueError):
                raise UserInputError(
                    f"Cost table '{self.path}' row {line} holds a value that is not a number."
                ) from None

    def _read_rows(self) -> list[dict[str, Any]]:
        if self.path.suffix.lower() == ".json":
            data = json.loads(self.path.read_text())
            return data if isinstance(data, list) else []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        for arch in archs:
            if arch not in self._values:
                raise ConfigError(f"Cost table '{self.path}' has no row for {self.space.to_string(arch)}.")
        for metric in self.directions:
            out[metric] = np.array([self._values[a][metric] for a in archs])
