"""Moved to :mod:`hwnas_pl.evaluators.analog_training`; this path keeps old imports, configs and pickles working."""

from hwnas_pl.evaluators.analog_training import *  # noqa: F403
