"""Architecture predictors used by searches: the AnalogNAS XGBoost surrogate (rank + AVM + σ)."""

from hwnas_pl.surrogates.analog import AnalogSurrogate, load_training_data, pairwise_hinge

__all__ = ["AnalogSurrogate", "load_training_data", "pairwise_hinge"]
