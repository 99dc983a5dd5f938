"""LightningModules: thin Lightning glue over the plain-PyTorch core.

:class:`AnalogModule` needs aihwkit and is imported on first use (``hwnas_pl.modules.AnalogModule``), so that the
other modules and ``hwnas --help`` do not pay for it.
"""

import importlib
from typing import Any

from hwnas_pl.modules.base import HWNASModule, NonFiniteLossError
from hwnas_pl.modules.classifier_module import ClassifierModule
from hwnas_pl.modules.distillation_module import DistillationModule
from hwnas_pl.modules.pareto_rank_module import ParetoRankModule
from hwnas_pl.modules.regression_module import RegressionModule
from hwnas_pl.modules.segmentation_module import SegmentationModule
from hwnas_pl.modules.supernet_module import SupernetModule

#: classes imported when first asked for (they need aihwkit)
LAZY = {"AnalogModule": "hwnas_pl.modules.analog_module"}

__all__ = [
    "AnalogModule",
    "ClassifierModule",
    "DistillationModule",
    "HWNASModule",
    "NonFiniteLossError",
    "ParetoRankModule",
    "RegressionModule",
    "SegmentationModule",
    "SupernetModule",
]


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'hwnas_pl.modules' has no attribute '{name}'")
