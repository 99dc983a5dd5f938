"""Named aihwkit configurations for hardware-aware (HWA) training and analog inference (thesis ch. 5).

Every preset is an aihwkit ``TorchInferenceRPUConfig`` (pure-torch tiles: they run on CPU and GPU with aihwkit
1.1.0, see DESIGN.md). Training injects additive Gaussian weight noise of std ``weight_noise · max|W|`` per
mini-batch (aihwkit's weight modifier); inference adds PCM programming and read noise and conductance drift
``G(t) = G(t0) (t/t0)^-ν`` (``PCMLikeNoiseModel``) and rescales outputs with global drift compensation. MVM inputs
and outputs go through DAC/ADC of ``dac_bits``/``adc_bits`` (``2^bits - 2`` steps, aihwkit's convention), weights
are clipped to ``±clip`` of their mapped range after each step, biases stay digital.

- ``standard_hwa_torch``: aihwkit's ``StandardHWATrainingPreset`` (Rasch et al. 2023) as far as pure-torch tiles
  can hold it: 512-row tiles, column-wise weight mapping with learned output scales, learned input (DAC) ranges
  initialised from the first 100 batches, channel-wise remapping, 8-bit DAC/ADC, output noise 0.04, output bound
  10, PCM programming noise and drift with global drift compensation. **Not the same at inference:** the torch
  tile refuses the preset's per-MVM PCM read noise (``w_noise`` 0.0175) and its IR drop, so neither is
  simulated; **and in training** it adds Gaussian weight noise of 0.03·max|W| per mini-batch, which the aihwkit
  preset does not have, as the substitute for the missing read noise. (``standard_hwa`` is its former name.)
- ``analognas``: the AnalogNAS repository's ``create_rpu_config`` (IBM/analog-nas, methods §10): 256-row tiles,
  at most 255 outputs per tile, fixed clip 1.0, learned output scales, 8-bit DAC/ADC, no bound management,
  ``PCMLikeNoiseModel(g_max=25)``, global drift compensation. That code sets ``modifier.std_dev`` but leaves the
  modifier's type NONE, so it trains **without** weight noise, and so does this preset; the thesis sweeps the
  noise (0.1–5.0 [AMBIG: unit]): set ``weight_noise`` (e.g. 0.15 = 15 % of max|W|, the README's setting).
- ``ideal``: floating point; no noise, no quantization, no drift (the digital reference).

``weight_noise`` (any preset) is the training noise to sweep; ``g_max`` changes the PCM conductance range and keeps
the preset's noise model otherwise (on ``ideal`` it stays noise-free).
"""

from __future__ import annotations

import copy
import warnings
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


@ANALOG_PRESETS.register("standard_hwa_torch")
def standard_hwa_torch() -> TorchInferenceRPUConfig:
    """The standard HWA-training setting of aihwkit on pure-torch tiles, without read noise or IR drop (see above)."""
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
    cfg.modifier = WeightModifierParameter(type=WeightModifierType.NONE, std_dev=5.0, rel_to_actual_wmax=True)
    cfg.noise_model = PCMLikeNoiseModel(g_max=25.0)
    cfg.drift_compensation = GlobalDriftCompensation()
    return cfg


#: former preset names -> current ones (resolved with a warning, so older configs and checkpoints keep loading)
RENAMED_PRESETS = {"standard_hwa": "standard_hwa_torch"}


@ANALOG_PRESETS.register("ideal")
def ideal() -> TorchInferenceRPUConfig:
    """Floating point: perfect MVM, no weight noise, no clipping, no drift."""
    cfg = TorchInferenceRPUConfig()
    cfg.mapping = MappingParameter(max_input_size=0, max_output_size=0, digital_bias=True)
    cfg.forward = IOParameters(is_perfect=True)
    cfg.noise_model = PCMLikeNoiseModel(prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0)
    cfg.drift_compensation = None
    return cfg


def resolve_preset(name: str) -> str:
    """The current name of preset ``name`` (a former name warns once and is translated)."""
    if name in RENAMED_PRESETS:
        new = RENAMED_PRESETS[name]
        warnings.warn(
            f"Analog preset '{name}' is now called '{new}' (it lacks aihwkit's read noise and IR drop, which torch "
            "tiles cannot simulate); using it.",
            stacklevel=3,
        )
        return new
    return name


def list_analog_presets() -> list[str]:
    """Names of the registered presets."""
    return ANALOG_PRESETS.names()


#: the preset settings a config may override, in :func:`make_rpu_config`'s order (one list for every caller)
RPU_OVERRIDES = ("tile_size", "weight_noise", "clip", "dac_bits", "adc_bits", "out_noise", "g_max", "digital_bias")


def make_rpu_config(
    preset: str = "standard_hwa_torch",
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
        g_max: maximal PCM conductance (µS) of the noise model; its other settings (noise and drift scales) stay.
        digital_bias: keep biases in digital (else they occupy a tile row).
    """
    cfg = copy.deepcopy(ANALOG_PRESETS.create(resolve_preset(preset)))
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
        cfg.noise_model = with_g_max(cfg.noise_model, float(g_max))
    if digital_bias is not None:
        cfg.mapping.digital_bias = bool(digital_bias)
    return cfg


def with_g_max(model: PCMLikeNoiseModel, g_max: float) -> PCMLikeNoiseModel:
    """A copy of the PCM noise model ``model`` with conductance range ``g_max`` and the same noise/drift scales."""
    if not isinstance(model, PCMLikeNoiseModel):
        raise ConfigError(f"g_max applies to a PCM noise model; this preset's is {type(model).__name__}.")
    return PCMLikeNoiseModel(
        g_max=g_max,
        t_read=model.t_read,
        t_0=model.t_0,
        prog_noise_scale=model.prog_noise_scale,
        read_noise_scale=model.read_noise_scale,
        drift_scale=model.drift_scale,
    )


def training_free_config(cfg: TorchInferenceRPUConfig) -> TorchInferenceRPUConfig:
    """``cfg`` with its training non-idealities off: perfect MVM, no weight noise, clipping, remapping, range decay.

    For the input ranges see :func:`~hwnas_pl.analog.inference.bypass_input_ranges`. The tiles keep their
    mapping, so a network can train in floating point and switch to ``cfg`` later.
    """
    out = copy.deepcopy(cfg)
    out.pre_post.input_range.decay = 0.0
    out.forward = IOParameters(is_perfect=True)
    out.modifier = WeightModifierParameter(type=WeightModifierType.NONE)
    out.clip = WeightClipParameter(type=WeightClipType.NONE)
    out.remap = WeightRemapParameter(type=WeightRemapType.NONE)
    return out
