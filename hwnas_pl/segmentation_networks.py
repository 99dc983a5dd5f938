"""Moved to :mod:`hwnas_pl.nn.segmentation`; this path keeps old configs, checkpoints and imports working."""

from hwnas_pl.nn.segmentation import *  # noqa: F403
