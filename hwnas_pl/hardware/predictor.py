"""Moved to :mod:`hwnas_pl.surrogates.feature_predictor`; this path keeps old imports, configs and pickles working."""

from hwnas_pl.surrogates.feature_predictor import *  # noqa: F403
