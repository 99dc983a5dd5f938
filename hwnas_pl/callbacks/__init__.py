"""Lightning callbacks."""

from hwnas_pl.callbacks.drift_evaluation import DriftEvaluation
from hwnas_pl.callbacks.prpnas import OperationPruning, ParetoRankAlphaUpdate, SupernetExport

__all__ = ["DriftEvaluation", "OperationPruning", "ParetoRankAlphaUpdate", "SupernetExport"]
