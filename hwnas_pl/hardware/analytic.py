"""Moved to :mod:`hwnas_pl.nn.counting`; this path keeps old imports, configs and pickles working."""

from hwnas_pl.nn.counting import *  # noqa: F403
