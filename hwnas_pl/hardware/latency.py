"""Moved to :mod:`hwnas_pl.evaluators.latency`; this path keeps old imports, configs and pickles working."""

from hwnas_pl.evaluators.latency import *  # noqa: F403
