"""LightningModules: thin Lightning glue over the plain-PyTorch core."""

from hwnas_pl.modules.analog_module import AnalogModule
from hwnas_pl.modules.base import HWNASModule, NonFiniteLossError
from hwnas_pl.modules.classifier_module import ClassifierModule
from hwnas_pl.modules.regression_module import RegressionModule
from hwnas_pl.modules.segmentation_module import SegmentationModule
from hwnas_pl.modules.supernet_module import SupernetModule

__all__ = [
    "AnalogModule",
    "ClassifierModule",
    "HWNASModule",
    "NonFiniteLossError",
    "RegressionModule",
    "SegmentationModule",
    "SupernetModule",
]
