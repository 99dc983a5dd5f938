"""Everything that scores an architecture, behind one interface (:class:`~hwnas_pl.evaluators.base.CostModel`).

- ``base``: the interface (``evaluate(archs) -> {metric: array}`` with directions), its registry and factory;
- ``analytic``: exact FLOPs/MACs/parameters; ``latency``: measured latency; ``lut``: per-op latency tables;
- ``tables``: a user's CSV/JSON device table; ``nasbench201``: the NAS-Bench-201 / analog-nasbench table;
- ``training`` / ``analog_training``: evaluators that train each architecture with a Lightning Trainer
  (imported on their own: they need Lightning and aihwkit);
- predictors and surrogates (fit, fine-tune, score, save, load) live in :mod:`hwnas_pl.surrogates`.
"""

from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.evaluators.base import (
    CostModel,
    build_cost_model,
    create_cost_model,
    list_cost_models,
    register_cost_model,
)
from hwnas_pl.evaluators.latency import MeasuredLatencyModel
from hwnas_pl.evaluators.lut import LatencyLUT
from hwnas_pl.evaluators.nasbench201 import NASBench201AnalogModel, NASBench201Table, NASBench201TableModel
from hwnas_pl.evaluators.tables import TableCostModel

__all__ = [
    "AnalyticCostModel",
    "CostModel",
    "LatencyLUT",
    "MeasuredLatencyModel",
    "NASBench201AnalogModel",
    "NASBench201Table",
    "NASBench201TableModel",
    "TableCostModel",
    "build_cost_model",
    "create_cost_model",
    "list_cost_models",
    "register_cost_model",
]
