"""Moved to :mod:`hwnas_pl.evaluators` (cost models) and :mod:`hwnas_pl.nn.counting` (MAC counts).

The old module paths under ``hwnas_pl.hardware`` still import, so configs and pickles keep working.
"""
