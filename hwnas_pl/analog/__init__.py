"""Analog in-memory computing with aihwkit's pure-torch tiles: presets, conversion, drift evaluation (thesis ch. 5)."""

from hwnas_pl.analog.conversion import set_tile_config, to_analog
from hwnas_pl.analog.drift import DEFAULT_TIMES, DriftResult, drift_accuracy, parse_time, time_label
from hwnas_pl.analog.presets import list_analog_presets, make_rpu_config, training_free_config
from hwnas_pl.analog.transform import AnalogTransform

__all__ = [
    "AnalogTransform",
    "DEFAULT_TIMES",
    "DriftResult",
    "drift_accuracy",
    "list_analog_presets",
    "make_rpu_config",
    "parse_time",
    "set_tile_config",
    "time_label",
    "to_analog",
    "training_free_config",
]
