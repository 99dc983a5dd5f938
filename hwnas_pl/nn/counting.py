r"""Exact multiply-accumulates (MACs), FLOPs and parameters of a network, counted with forward hooks.

For a convolution with output :math:`C_{out} \times H_{out} \times W_{out}`, kernel :math:`k_h \times k_w` and
``groups`` :math:`g`, and a linear layer of :math:`I` inputs and :math:`O` outputs (per sample):

.. math::
    \mathrm{MACs}_{conv} = C_{out} H_{out} W_{out} \frac{C_{in}}{g} k_h k_w, \qquad
    \mathrm{MACs}_{fc} = I \cdot O, \qquad \mathrm{FLOPs} = 2\,\mathrm{MACs}

Bias additions, normalisation, activations and pooling are not counted (the survey's formula
:math:`2HW(C_{in}K^2+1)C_{out}` adds the bias term; NAS-Bench-201 and most HW-NAS papers report MACs as "FLOPs").
Parameters are every parameter of the network, counted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class LayerCount:
    """One executed convolution or linear layer."""

    name: str
    kind: str
    macs: int
    out_shape: tuple[int, ...]


@dataclass
class NetworkCounts:
    """What :func:`count_network` measured for one input sample."""

    macs: int
    params: int
    layers: list[LayerCount] = field(default_factory=list)
    spatial_sizes: list[int] = field(default_factory=list)

    @property
    def flops(self) -> int:
        """2 × MACs."""
        return 2 * self.macs

    @property
    def n_convs(self) -> int:
        """Convolutions executed in one forward pass."""
        return sum(layer.kind == "conv" for layer in self.layers)

    @property
    def first_channels(self) -> int:
        """Output channels of the first convolution (0 if none)."""
        convs = [layer for layer in self.layers if layer.kind == "conv"]
        return convs[0].out_shape[0] if convs else 0

    @property
    def last_channels(self) -> int:
        """Output channels of the last convolution (0 if none)."""
        convs = [layer for layer in self.layers if layer.kind == "conv"]
        return convs[-1].out_shape[0] if convs else 0

    @property
    def downsamplings(self) -> int:
        """How many distinct smaller feature-map heights the convolutions produced than the input's."""
        return max(len(set(self.spatial_sizes)) - 1, 0)


def first_spatial(shape: Sequence[int]) -> list[int]:
    """``[height]`` of a ``(C, H, ...)`` sample (the length of a ``(C, L)`` signal); ``[]`` for a flat ``(F,)`` one."""
    return [int(shape[1])] if len(shape) >= 2 else []


def count_network(model: nn.Module, input_shape: Sequence[int]) -> NetworkCounts:
    """Count MACs and parameters of ``model`` for one input of ``input_shape`` (without batch dimension).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
        >>> c = count_network(net, (3, 4, 4))
        >>> c.macs == 8 * 4 * 4 * 3 * 9 + 128 * 10, c.params == (3 * 9 * 8 + 8) + (128 * 10 + 10)
        (True, True)
    """
    shape = tuple(int(s) for s in input_shape)
    params = sum(p.numel() for p in model.parameters())
    counts = NetworkCounts(macs=0, params=params, spatial_sizes=first_spatial(shape))
    hooks = []

    def hook(module: nn.Module, inputs, output, name: str) -> None:
        out = output.shape[1:]
        if isinstance(module, _CONVS):
            per_position = (module.in_channels // module.groups) * int(torch.tensor(module.kernel_size).prod())
            macs, kind = int(out.numel()) * per_position, "conv"
            counts.spatial_sizes.extend(first_spatial(out))
        else:
            macs, kind = int(out.numel()) * module.in_features, "linear"
        counts.macs += macs
        counts.layers.append(LayerCount(name, kind, macs, tuple(int(s) for s in out)))

    for name, module in model.named_modules():
        if isinstance(module, (*_CONVS, nn.Linear)):
            hooks.append(module.register_forward_hook(lambda m, i, o, name=name: hook(m, i, o, name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return counts
