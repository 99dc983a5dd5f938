"""Moved to :mod:`hwnas_pl.evaluators.nasbench201`; ``hwnas_pl.benchmarks.nasbench201`` still imports."""
