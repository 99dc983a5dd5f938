"""Named aihwkit configurations for hardware-aware (HWA) training and analog inference (thesis ch. 5).

Every preset is an aihwkit ``TorchInferenceRPUConfig`` (pure-torch tiles: they run on CPU and GPU with aihwkit
1.1.0, see DESIGN.md). Training injects additive Gaussian weight noise of std ``weight_noise · max|W|`` per
mini-batch (aihwkit's weight modifier); inference adds PCM programming and read noise and conductance drift
``G(t) = G(t0) (t/t0)^-ν`` (``PCMLikeNoiseModel``) and rescales outputs with global drift compensation. MVM inputs
and outputs go through DAC/ADC of ``dac_bits``/``adc_bits`` (``2^bits - 2`` steps, aihwkit's convention), weights
are clipped to ``±clip`` of their mapped range after each step, biases stay digital.

- ``standard_hwa``: aihwkit's ``StandardHWATrainingPreset`` (Rasch et al. 2023) on torch tiles: 512-row tiles,
  column-wise weight mapping with learned output scales, learned input (DAC) ranges initialised from the first
  100 batches, channel-wise remapping, 8-bit DAC/ADC, output noise 0.04, output bound 10. The torch tile has
  no forward read-noise or IR-drop model, so the preset's ``w_noise``/``ir_drop`` are replaced by the training
  weight noise.
- ``analognas``: the AnalogNAS training setting (IBM/analog-nas ``create_rpu_config``, methods §10): 256-row tiles,
  at most 255 outputs per tile, fixed clip 1.0, learned output scales, 8-bit DAC/ADC, no bound management,
  ``PCMLikeNoiseModel(g_max=25)``. Its weight noise (the thesis sweeps 0.1–5.0 [AMBIG: unit]) is 5 % of max|W|.
- ``ideal``: floating point; no noise, no quantization, no drift (the digital reference).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from aihwkit.inference.compensation.drift import GlobalDriftCompensation
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters import (
    InputRangeParameter,
    IOParameters,
    MappingParameter,
    PrePostProcessingParameter,
    WeightClipParameter,
    WeightModifierParameter,
    WeightRemapParameter,
)
from aihwkit.simulator.parameters.enums import (
    BoundManagementType,
    NoiseManagementType,
    WeightClipType,
    WeightModifierType,
    WeightRemapType,
)
from aihwkit.simulator.presets.utils import PresetIOParameters

from hwnas_pl.errors import ConfigError
from hwnas_pl.registry import Registry

ANALOG_PRESETS: Registry[Callable[[], TorchInferenceRPUConfig]] = Registry("analog preset")


@ANALOG_PRESETS.register("standard_hwa")
def standard_hwa() -> TorchInferenceRPUConfig:
    """The standard HWA-training setting of aihwkit on pure-torch tiles (see the module docstring)."""
    cfg = TorchInferenceRPUConfig()
    cfg.mapping = MappingParameter(
        weight_scaling_omega=1.0,
        weight_scaling_columnwise=True,
        max_input_size=512,
        max_output_size=0,
        digital_bias=True,
        learn_out_scaling=True,
        out_scaling_columnwise=True,
    )
    cfg.forward = PresetIOParameters(
        inp_res=254.0,
        out_res=254.0,
        bound_management=BoundManagementType.NONE,
        noise_management=NoiseManagementType.CONSTANT,
        nm_thres=1.0,
        out_noise=0.04,
        out_bound=10.0,
    )
    cfg.pre_post = PrePostProcessingParameter(
        input_range=InputRangeParameter(
            enable=True,
            init_value=3.0,
            init_from_data=100,
            init_std_alpha=3.0,
            decay=0.001,
            input_min_percentage=0.95,
            output_min_percentage=0.95,
            manage_output_clipping=False,
            gradient_scale=1.0,
            gradient_relative=True,
        )
    )
    cfg.remap = WeightRemapParameter(remapped_wmax=1.0, type=WeightRemapType.CHANNELWISE_SYMMETRIC)
    cfg.clip = WeightClipParameter(type=WeightClipType.FIXED_VALUE, fixed_value=1.0)
    cfg.modifier = WeightModifierParameter(type=WeightModifierType.ADD_NORMAL, std_dev=0.03, rel_to_actual_wmax=True)
    cfg.noise_model = PCMLikeNoiseModel()
    cfg.drift_compensation = GlobalDriftCompensation()
    return cfg


@ANALOG_PRESETS.register("analognas")
def analognas() -> TorchInferenceRPUConfig:
    """The AnalogNAS repository's HWA setting (see the module docstring)."""
    cfg = TorchInferenceRPUConfig()
    cfg.mapping = MappingParameter(
        weight_scaling_omega=1.0,
        max_input_size=256,
        max_output_size=255,
        digital_bias=True,
        learn_out_scaling=True,
    )
    cfg.forward = PresetIOParameters(inp_res=1 / 256, out_res=1 / 256, bound_management=BoundManagementType.NONE)
    cfg.clip = WeightClipParameter(type=WeightClipType.FIXED_VALUE, fixed_value=1.0)
    cfg.modifier = WeightModifierParameter(type=WeightModifierType.ADD_NORMAL, std_dev=0.05, rel_to_actual_wmax=True)
    cfg.noise_model = PCMLikeNoiseModel(g_max=25.0)
    cfg.drift_compensation = GlobalDriftCompensation()
    return cfg


@ANALOG_PRESETS.register("ideal")
def ideal() -> TorchInferenceRPUConfig:
    """Floating point: perfect MVM, no weight noise, no clipping, no drift."""
    cfg = TorchInferenceRPUConfig()
    cfg.mapping = MappingParameter(max_input_size=0, max_output_size=0, digital_bias=True)
    cfg.forward = IOParameters(is_perfect=True)
    cfg.noise_model = PCMLikeNoiseModel(prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0)
    cfg.drift_compensation = None
    return cfg


def list_analog_presets() -> list[str]:
    """Names of the registered presets."""
    return ANALOG_PRESETS.names()


#: the preset settings a config may override, in :func:`make_rpu_config`'s order (one list for every caller)
RPU_OVERRIDES = ("tile_size", "weight_noise", "clip", "dac_bits", "adc_bits", "out_noise", "g_max", "digital_bias")


def make_rpu_config(
    preset: str = "standard_hwa",
    tile_size: int | None = None,
    weight_noise: float | None = None,
    clip: float | None = None,
    dac_bits: int | None = None,
    adc_bits: int | None = None,
    out_noise: float | None = None,
    g_max: float | None = None,
    digital_bias: bool | None = None,
) -> TorchInferenceRPUConfig:
    """The preset ``preset`` with the given settings overridden (``None`` keeps the preset's).

    Args:
        preset: a name of :func:`list_analog_presets`.
        tile_size: crossbar rows (inputs) per tile; larger layers are split over several tiles.
        weight_noise: std of the training weight noise, relative to max|W| of the tile (0 disables it).
        clip: weights are clipped to ``±clip`` (of the mapped range) after every step (0 disables clipping).
        dac_bits: input (DAC) resolution in bits.
        adc_bits: output (ADC) resolution in bits.
        out_noise: std of the additive output noise of each MVM.
        g_max: maximal PCM conductance (µS) of the noise model.
        digital_bias: keep biases in digital (else they occupy a tile row).
    """
    cfg = copy.deepcopy(ANALOG_PRESETS.create(preset))
    for label, value in (("tile_size", tile_size), ("dac_bits", dac_bits), ("adc_bits", adc_bits)):
        if value is not None and int(value) < 1:
            raise ConfigError(f"Analog {label} must be a positive integer, got {value}.")
    for label, value in (("weight_noise", weight_noise), ("clip", clip), ("out_noise", out_noise), ("g_max", g_max)):
        if value is not None and not value >= 0:
            raise ConfigError(f"Analog {label} must be a non-negative number, got {value}.")
    if tile_size is not None:
        cfg.mapping.max_input_size = int(tile_size)
    if weight_noise is not None:
        kind = WeightModifierType.ADD_NORMAL if weight_noise > 0 else WeightModifierType.NONE
        cfg.modifier = WeightModifierParameter(type=kind, std_dev=float(weight_noise), rel_to_actual_wmax=True)
    if clip is not None:
        kind = WeightClipType.FIXED_VALUE if clip > 0 else WeightClipType.NONE
        cfg.clip = WeightClipParameter(type=kind, fixed_value=float(clip))
    if dac_bits is not None:
        cfg.forward.inp_res = float(2 ** int(dac_bits) - 2)
    if adc_bits is not None:
        cfg.forward.out_res = float(2 ** int(adc_bits) - 2)
    if out_noise is not None:
        cfg.forward.out_noise = float(out_noise)
    if g_max is not None:
        cfg.noise_model = PCMLikeNoiseModel(g_max=float(g_max))
    if digital_bias is not None:
        cfg.mapping.digital_bias = bool(digital_bias)
    return cfg


def training_free_config(cfg: TorchInferenceRPUConfig) -> TorchInferenceRPUConfig:
    """``cfg`` with its training non-idealities off (perfect MVM, no weight noise, clipping or remapping).

    The tiles keep their mapping, so a network can train in floating point and switch to ``cfg`` later.
    """
    out = copy.deepcopy(cfg)
    out.forward = IOParameters(is_perfect=True)
    out.modifier = WeightModifierParameter(type=WeightModifierType.NONE)
    out.clip = WeightClipParameter(type=WeightClipType.NONE)
    out.remap = WeightRemapParameter(type=WeightRemapType.NONE)
    return out
