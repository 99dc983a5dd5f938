"""Trainable evaluators (fit, fine-tune, score, save, load).

The :class:`Surrogate` base, the feature predictors of hardware cost, and the AnalogNAS XGBoost surrogate
(rank + AVM + σ).
"""

from hwnas_pl.surrogates.analog import AnalogSurrogate, load_training_data, pairwise_hinge
from hwnas_pl.surrogates.base import Surrogate, check_trained_for, feature_matrix
from hwnas_pl.surrogates.feature_predictor import FeaturePredictor

__all__ = [
    "AnalogSurrogate",
    "FeaturePredictor",
    "Surrogate",
    "check_trained_for",
    "feature_matrix",
    "load_training_data",
    "pairwise_hinge",
]
