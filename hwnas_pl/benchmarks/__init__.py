"""Tabular benchmarks: every architecture of a space with its measured metrics."""
