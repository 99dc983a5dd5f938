"""Plain PyTorch pieces the LightningModules compose: loss terms, model transforms (next: reuse, quantized layers)."""

from hwnas_pl.nn.loss_terms import ActivationPenalty, FeatureLossTerm, LossTerm
from hwnas_pl.nn.transforms import ModelTransform

__all__ = ["ActivationPenalty", "FeatureLossTerm", "LossTerm", "ModelTransform"]
