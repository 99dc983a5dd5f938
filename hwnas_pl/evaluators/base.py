"""The one evaluator interface every search uses: :class:`CostModel`, its registry and its factory.

A cost model maps a batch of architectures of one space to named arrays: ``evaluate(archs) -> {"latency_ms":
array, ...}`` (pymoo's ``Problem._evaluate`` habit: batched by default). Each metric has a direction in
:attr:`CostModel.directions` (``"min"`` for costs, ``"max"`` for accuracies), so searches build objectives without
sign mistakes. Subclasses fill ``out`` in ``_evaluate``; the public :meth:`CostModel.evaluate` validates the
architectures and the arrays.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError
from hwnas_pl.registry import Registry
from hwnas_pl.spaces.base import SearchSpace

COST_MODELS: Registry[CostModel] = Registry("cost model")


def register_cost_model(name: str):
    """Class decorator registering a cost model under ``name``."""
    return COST_MODELS.register(name)


#: the package's modules that register cost models without Lightning (timm's "import every model" habit, lazily:
#: they import this module, so it cannot import them at the top)
PLUGIN_MODULES = (
    "hwnas_pl.evaluators.analytic",
    "hwnas_pl.evaluators.tables",
    "hwnas_pl.evaluators.latency",
    "hwnas_pl.evaluators.lut",
    "hwnas_pl.evaluators.nasbench201",
    "hwnas_pl.evaluators.proxies",
    "hwnas_pl.evaluators.hw_nas_bench",
    "hwnas_pl.surrogates.feature_predictor",
    "hwnas_pl.surrogates.analog",
    "hwnas_pl.surrogates.pareto_score",
)


def list_cost_models() -> list[str]:
    """Registered cost-model names, the package's plugins imported first.

    ``analog_training`` (:mod:`hwnas_pl.evaluators.analog_training`) trains with Lightning and registers when that
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
