"""Lightning callbacks.

:class:`DriftEvaluation` needs aihwkit and is imported on first use (``hwnas_pl.callbacks.DriftEvaluation``).
"""

import importlib
from typing import Any

from hwnas_pl.callbacks.lsh_refresh import LSHRefresh
from hwnas_pl.callbacks.prpnas import OperationPruning, ParetoRankAlphaUpdate, SupernetExport, SupernetRanking

#: classes imported when first asked for (they need aihwkit)
LAZY = {"DriftEvaluation": "hwnas_pl.callbacks.drift_evaluation"}

__all__ = [
    "DriftEvaluation",
    "LSHRefresh",
    "OperationPruning",
    "ParetoRankAlphaUpdate",
    "SupernetExport",
    "SupernetRanking",
]


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'hwnas_pl.callbacks' has no attribute '{name}'")
