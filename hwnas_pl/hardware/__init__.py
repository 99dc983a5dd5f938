"""Hardware cost models: analytic counts, measured latency, per-op lookup tables, predictors, tables."""
