"""Moved to :mod:`hwnas_pl.evaluators.lut`; this path keeps old imports, configs and pickles working."""

from hwnas_pl.evaluators.lut import *  # noqa: F403
