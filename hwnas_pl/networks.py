"""Moved to :mod:`hwnas_pl.nn.backbones` (the networks) and :mod:`hwnas_pl.models` (registry and factory).

This path keeps old configs, checkpoints and imports working.
"""

from hwnas_pl.models import BACKBONES, create_backbone, list_backbones  # noqa: F401
from hwnas_pl.nn.backbones import *  # noqa: F403
