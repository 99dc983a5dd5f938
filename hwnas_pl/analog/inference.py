"""Input ranges of analog tiles, and the one way a digitally trained network is mapped for analog inference.

aihwkit's tiles clip each MVM input to ``±r`` (the DAC range, learned during HWA training) and compute on
``x / r``. Three situations need that range handled explicitly:

- **floating-point phase** (:func:`bypass_input_ranges`): before HWA training the network trains in plain
  floating point. ``r`` is set to ``2^16`` with its initialisation from data stopped, and
  :func:`~hwnas_pl.analog.presets.training_free_config` turns its decay off, so its gradient is numerically 0 (it
  stays a trainable parameter, as DDP requires): nothing is clipped, and dividing and multiplying by a power of
  two is exact, so the tiles compute what the digital layers do (up to rounding of the weight mapping scales);
- **start of HWA training** (:func:`restart_input_ranges`): ``r`` goes back to the preset's initial value and
  aihwkit initialises it from the next ``init_from_data`` training batches, as it does when training starts
  on the tiles;
- **inference-only mapping** (:func:`map_for_inference`): remap the weights onto the tiles' full conductance range,
  then calibrate ``r`` from data with the statistic aihwkit's initialisation uses (the running mean of
  ``init_std_alpha · std(x)`` per tile), in eval mode so BatchNorm statistics are not touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from hwnas_pl.analog.conversion import set_tile_config

#: input range of the floating-point phase: no clipping, and x / r * r == x exactly
BYPASS_RANGE = 2.0**16

#: parameter name endings of aihwkit's learned periphery (DAC input ranges, output scales)
PERIPHERY_PARAMETERS = ("input_range", "out_scaling_alpha")


def periphery_parameter_names(net: nn.Module) -> set[str]:
    """Names of ``net``'s learned periphery parameters, which weight decay must not shrink.

    Weight decay on them would narrow the DAC range and rescale the outputs, not regularise.
    """
    return {name for name, _ in net.named_parameters() if name.endswith(PERIPHERY_PARAMETERS)}


def ranged_tiles(net: nn.Module) -> list:
    """The tiles of ``net`` that have an input range."""
    return [t for t in net.analog_tiles() if getattr(t, "input_range", None) is not None]


@torch.no_grad()
def bypass_input_ranges(net: nn.Module) -> None:
    """Set every tile's input range to :data:`BYPASS_RANGE` and stop its initialisation from data."""
    for tile in ranged_tiles(net):
        tile.input_range.data.fill_(BYPASS_RANGE)
        tile.input_range_update_idx.data.fill_(float(tile.rpu_config.pre_post.input_range.init_from_data))


@torch.no_grad()
def restart_input_ranges(net: nn.Module) -> None:
    """Reset every tile's input range to its preset's ``init_value``; aihwkit initialises it from the next batches."""
    for tile in ranged_tiles(net):
        tile.input_range.data.fill_(float(tile.rpu_config.pre_post.input_range.init_value))
        tile.input_range_update_idx.data.zero_()


@torch.no_grad()
def calibrate_input_ranges(
    net: nn.Module,
    batches: Iterable,
    num_batches: int = 10,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> int:
    """Set each tile's input range to the mean over ``num_batches`` batches of ``init_std_alpha · std(x_tile)``.

    ``x_tile`` is what the tile receives (after the digital layers before it), the statistic is aihwkit's
    ``init_from_data`` one, and the network runs in eval mode, so BatchNorm uses and keeps its running statistics.
    ``reduce`` averages the ranges over processes (DDP). The ranges are marked initialised, so later training does
    not re-initialise them. Returns the number of batches used.
    """
    tiles = ranged_tiles(net)
    if not tiles:
        return 0
    sums = {id(t): torch.zeros((), dtype=torch.float64) for t in tiles}
    counts = dict.fromkeys(sums, 0)

    def hook(tile, args):
        std = args[0].detach().double().std()
        if std > 0:
            sums[id(tile)] += std.cpu()
            counts[id(tile)] += 1

    handles = [t.register_forward_pre_hook(hook) for t in tiles]
    device = tiles[0].input_range.device
    was_training, used = net.training, 0
    net.eval()
    try:
        for x, *_ in batches:
            if used >= num_batches:
                break
            net(x.to(device))
            used += 1
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    ranges = torch.tensor(
        [
            t.rpu_config.pre_post.input_range.init_std_alpha * float(sums[id(t)]) / counts[id(t)]
            if counts[id(t)]
            else float(t.input_range)
            for t in tiles
        ],
        dtype=tiles[0].input_range.dtype,
        device=device,
    )
    if reduce is not None:
        ranges = reduce(ranges)
    for tile, value in zip(tiles, ranges):
        tile.input_range.data.fill_(float(value))
        tile.input_range_update_idx.data.fill_(float(tile.rpu_config.pre_post.input_range.init_from_data))
    return used


def map_for_inference(
    net: nn.Module,
    rpu_config,
    batches: Iterable,
    num_batches: int = 10,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> nn.Module:
    """Prepare a digitally trained analog network (:func:`~hwnas_pl.analog.conversion.to_analog`) for inference.

    The tiles get ``rpu_config``; the weights are remapped so that each tile's largest weight sits at the top of
    its conductance range (aihwkit's ``remap_analog_weights``); the input ranges are calibrated on
    ``num_batches`` of ``batches`` (:func:`calibrate_input_ranges`: eval mode, BatchNorm untouched). In place;
    returns ``net``. Used for every digital reference: :class:`~hwnas_pl.callbacks.DriftEvaluation`, the
    benchmark, and inference-only mappings.
    """
    set_tile_config(net, rpu_config)
    net.remap_analog_weights()
    calibrate_input_ranges(net, batches, num_batches, reduce)
    return net
