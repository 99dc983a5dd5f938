"""Moved to :mod:`hwnas_pl.evaluators` (base, analytic, tables); this path keeps old imports and pickles working."""

from hwnas_pl.evaluators.analytic import *  # noqa: F403
from hwnas_pl.evaluators.base import *  # noqa: F403
from hwnas_pl.evaluators.tables import *  # noqa: F403
