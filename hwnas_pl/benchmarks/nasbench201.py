"""Moved to :mod:`hwnas_pl.evaluators.nasbench201`; this path keeps old imports, configs and pickles working."""

from hwnas_pl.evaluators.nasbench201 import *  # noqa: F403
