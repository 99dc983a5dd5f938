"""Lightning callbacks."""

from hwnas_pl.callbacks.drift_evaluation import DriftEvaluation

__all__ = ["DriftEvaluation"]
