"""Plain PyTorch pieces the LightningModules compose.

Loss terms (an activation penalty, the SA-training similarity regularizers) and model transforms (reuse layers
here; analog tiles in :mod:`hwnas_pl.analog`).
"""

from hwnas_pl.nn.loss_terms import ActivationPenalty, FeatureLossTerm, LossTerm
from hwnas_pl.nn.similarity_regularization import InterFrameSimilarity, IntraFrameSimilarity
from hwnas_pl.nn.transforms import LoadWeights, ModelTransform

__all__ = [
    "ActivationPenalty",
    "FeatureLossTerm",
    "InterFrameSimilarity",
    "IntraFrameSimilarity",
    "LoadWeights",
    "LossTerm",
    "ModelTransform",
]
