"""Map a digital network onto aihwkit analog tiles, keeping what the tiles cannot hold digital."""

from __future__ import annotations

import copy

from aihwkit.nn import AnalogConv1d, AnalogConv2d, AnalogConv3d, AnalogLinear
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from torch import nn

from hwnas_pl.errors import ConfigError

#: digital layer class -> analog layer class (exact classes: a subclass may change the forward).
CONVERTIBLE = {nn.Linear: AnalogLinear, nn.Conv1d: AnalogConv1d, nn.Conv2d: AnalogConv2d, nn.Conv3d: AnalogConv3d}
MVM_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)
#: tile parameters that are state, not trained weights (see :func:`to_analog`)
NO_GRADIENT_PARAMETERS = ("analog_ctx", "input_range_update_idx")


def unmappable_reason(module: nn.Module) -> str | None:
    """Why the matrix-vector layer ``module`` cannot be mapped to analog tiles, or ``None`` when it can."""
    if type(module) not in CONVERTIBLE:
        return f"{type(module).__name__} is not one of {', '.join(c.__name__ for c in CONVERTIBLE)}"
    if getattr(module, "groups", 1) != 1:
        return f"grouped convolution (groups={module.groups})"
    if getattr(module, "padding_mode", "zeros") != "zeros":
        return f"padding_mode '{module.padding_mode}'"
    if isinstance(getattr(module, "padding", None), str):
        return f"padding '{module.padding}'"
    return None


def to_analog(net: nn.Module, rpu_config: TorchInferenceRPUConfig) -> tuple[nn.Module, dict[str, str]]:
    """An analog copy of ``net`` (``net`` is left untouched) and the layers that stayed digital.

    Every ``Linear`` and ``Conv1d/2d/3d`` becomes an aihwkit analog layer on tiles of ``rpu_config``; grouped or
    depth-wise convolutions, string paddings and layer subclasses stay digital. Normalisation, pooling and
    activations are digital by design and not listed.

    Two tile parameters are bookkeeping, not weights, and never receive a gradient: aihwkit's optimizer context
    (``analog_ctx``, unused by torch tiles, whose weights are ordinary parameters) and the input-range
    initialisation counter. They are marked ``requires_grad=False`` so that DDP does not report them as unused.

    Returns:
        (analog network wrapped so that ``program_analog_weights``/``drift_analog_weights`` apply to all tiles,
        ``{layer name: why it stayed digital}``).

    Raises:
        ConfigError: when no layer of ``net`` can be mapped.
    """
    digital = {
        name: reason
        for name, m in net.named_modules()
        if isinstance(m, MVM_LAYERS)
        for reason in [unmappable_reason(m)]
        if reason is not None
    }
    mappable = [name for name, m in net.named_modules() if isinstance(m, MVM_LAYERS) and name not in digital]
    if not mappable:
        found = ", ".join(f"{k} ({v})" for k, v in digital.items()) or "no Linear or Conv layer at all"
        raise ConfigError(
            f"aihwkit cannot map any layer of {type(net).__name__} to analog tiles ({found}); expected Linear or "
            "Conv1d/2d/3d layers with groups=1."
        )
    analog = convert_to_analog(
        copy.deepcopy(net),
        rpu_config,
        conversion_map=CONVERTIBLE,
        exclude_modules=list(digital),
        ensure_analog_root=True,
        inplace=True,
    )
    for name, param in analog.named_parameters():
        if name.endswith(NO_GRADIENT_PARAMETERS):
            param.requires_grad_(False)
    return analog, digital


def set_tile_config(net: nn.Module, rpu_config: TorchInferenceRPUConfig) -> None:
    """Give every tile of ``net`` (from :func:`to_analog`) a copy of ``rpu_config``.

    Torch tiles read it at their next forward; aihwkit's ``replace_rpu_config`` would rebuild the tiles instead.
    """
    for tile in net.analog_tiles():
        tile.rpu_config = copy.deepcopy(rpu_config)


TILE_STATE_SUFFIX = "analog_tile_state"


def plain_state_dict(state: dict) -> dict:
    """``state`` with each tile's ``rpu_config`` object left out, so ``torch.load(weights_only=True)`` reads it.

    The configuration comes back from the model on loading (:func:`restore_rpu_configs`).
    """
    out = dict(state)
    for key, value in state.items():
        if key.endswith(TILE_STATE_SUFFIX) and isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if k != "rpu_config"}
    return out


def restore_rpu_configs(state: dict, model: nn.Module, prefix: str = "") -> None:
    """Put the tiles' ``rpu_config`` of ``model`` back into a :func:`plain_state_dict` (in place).

    ``prefix`` is what ``state``'s keys carry before ``model``'s own names (e.g. ``"net."``).
    """
    own = {prefix + k: v for k, v in model.state_dict().items() if k.endswith(TILE_STATE_SUFFIX)}
    for key, value in state.items():
        if key in own and isinstance(value, dict) and "rpu_config" not in value:
            state[key] = {**value, "rpu_config": copy.deepcopy(own[key]["rpu_config"])}
