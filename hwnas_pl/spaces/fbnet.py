"""FBNet layer-wise space (Wu et al., CVPR 2019) as HW-NAS-Bench (Li et al., ICLR 2021) defines and prices it.

22 searchable layers, each one of 9 blocks: ``k{3,5}_e{1,3,6}`` inverted-residual blocks, the grouped ``k3_e1_g2``
and ``k5_e1_g2`` (1×1 convolutions in 2 groups, channel shuffle between them) and ``skip`` (identity where the
layer keeps its input's shape, else a 1×1 conv + BN + ReLU with the layer's stride), so the space holds 9^22
architectures. The fixed skeleton around them, from HW-NAS-Bench's ``fbnet_get_metrics``:

- 3×3 stem to 16 channels (conv + BN + ReLU);
- stages of (layers, channels) (1, 16), (4, 24), (4, 32), (4, 64), (4, 112), (4, 184), (1, 352), the first layer of
  each stage carrying the stage's stride;
- 1×1 conv + BN + ReLU to the header channels, global average pool, linear classifier.

``cifar`` (HW-NAS-Bench's ``cifar100``, 32×32): stem stride 1, stage strides (1, 1, 2, 2, 1, 2, 1), header 1504.
``imagenet`` (224×224): stem stride 2, stage strides (1, 2, 2, 2, 1, 2, 1), header 1984 (FBNet's own setting).

A block (``ConvBlock`` there): 1×1 expand (groups g) → BN → ReLU → [shuffle if g > 1] → k×k depthwise (stride) →
BN → ReLU → 1×1 project (groups g) → BN, plus the input when the shape is kept. Unlike MBConv (``mbconv`` space),
expansion 1 still has its 1×1 expand convolution and the activation is ReLU, as the benchmark's networks have.
An architecture is the tuple of 22 block names, written joined by ``-``; its integer vector is HW-NAS-Bench's
``op_idx_list`` (block index in :data:`FBNET_CHOICES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.spaces.base import OpSpec, register_search_space
from hwnas_pl.spaces.layerwise import LayerwiseSpace

FBNET_CHOICES = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
NODE_TYPES = ("input", *FBNET_CHOICES, "output")
STEM_CHANNELS = 16
STAGES = ((1, 16), (4, 24), (4, 32), (4, 64), (4, 112), (4, 184), (1, 352))  # (layers, channels)
SKELETONS = {
    "cifar": {"stem_stride": 1, "strides": (1, 1, 2, 2, 1, 2, 1), "header": 1504},
    "imagenet": {"stem_stride": 2, "strides": (1, 2, 2, 2, 1, 2, 1), "header": 1984},
}


def parse_block(choice: str) -> tuple[int, int, int]:
    """(kernel, expansion, groups) of a block name such as ``k5_e1_g2``."""
    parts = choice.split("_")
    return int(parts[0][1:]), int(parts[1][1:]), int(parts[2][1:]) if len(parts) == 3 else 1


def conv_norm_relu(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    """Conv (no bias) → BN → ReLU: the stem, the header and a projecting skip (``ConvNorm``/``Skip`` there)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: ``(N, g·c, H, W)`` → interleave the ``g`` groups' channels."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class FBNetBlock(nn.Module):
    """1×1 expand (groups) → BN → ReLU → shuffle → k×k depthwise → BN → ReLU → 1×1 project (groups) → BN (+ input)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int, groups: int = 1) -> None:
        super().__init__()
        hidden = c_in * expand
        self.body = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, groups=groups, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            ChannelShuffle(groups) if groups > 1 else nn.Identity(),
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, c_out, 1, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


def is_identity(choice: str, c_in: int, c_out: int, stride: int) -> bool:
    """Whether block ``choice`` at a layer of this shape is a plain identity (a skip that keeps the shape)."""
    return choice == "skip" and stride == 1 and c_in == c_out


def fbnet_block(choice: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """The module of block ``choice`` for one layer (``skip``: identity, or a 1×1 conv where the shape changes)."""
    if choice == "skip":
        return nn.Identity() if is_identity(choice, c_in, c_out, stride) else conv_norm_relu(c_in, c_out, 1, stride)
    kernel, expand, groups = parse_block(choice)
    return FBNetBlock(c_in, c_out, kernel, expand, stride, groups)


def _head(c_in: int, header: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        conv_norm_relu(c_in, header, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(header, num_classes)
    )


@register_search_space("fbnet")
class FBNetSpace(LayerwiseSpace):
    """HW-NAS-Bench's FBNet space: 22 layers of 9 blocks over a fixed skeleton.

    Args:
        skeleton: ``"cifar"`` (32×32 inputs; HW-NAS-Bench's ``cifar100`` networks) or ``"imagenet"`` (224×224).

    Example:
        >>> space = FBNetSpace("cifar")
        >>> space.n_vars, space.size() == 9**22, space.layers[1]
        (22, True, (16, 24, 1))
    """

    name = "fbnet"
    label = "FBNet"
    node_types = NODE_TYPES

    def __init__(self, skeleton: str = "cifar") -> None:
        if skeleton not in SKELETONS:
            raise ConfigError(f"Unknown FBNet skeleton '{skeleton}'; expected one of: {', '.join(SKELETONS)}.")
        self.skeleton = skeleton
        spec = SKELETONS[skeleton]
        self.stem_stride: int = spec["stem_stride"]
        self.header: int = spec["header"]
        #: (c_in, c_out, stride) of every searchable layer
        self.layers: list[tuple[int, int, int]] = []
        c = STEM_CHANNELS
        for (n, c_out), stride in zip(STAGES, spec["strides"]):
            for i in range(n):
                self.layers.append((c, c_out, stride if i == 0 else 1))
                c = c_out

    def choices(self, layer: int) -> tuple[str, ...]:
        """Every layer chooses among the 9 blocks of :data:`FBNET_CHOICES` (HW-NAS-Bench's op indices)."""
        return FBNET_CHOICES

    def depth(self, arch: Any) -> int:
        """Stem + 3 convs per block + 1 per projecting skip + header conv + classifier."""
        arch = self.validate(arch)
        blocks = sum(3 if c != "skip" else int(not is_identity(c, *layer)) for c, layer in zip(arch, self.layers))
        return 1 + blocks + 1 + 1

    def resolutions(self, size: int) -> list[int]:
        """Input height (= width) of each searchable layer for ``size``×``size`` network inputs, then the header's."""
        h = (size - 1) // self.stem_stride + 1
        out = []
        for _, _, stride in self.layers:
            out.append(h)
            h = (h - 1) // stride + 1
        return [*out, h]

    def latency_ops(self, arch: Any, num_classes: int, input_shape: Sequence[int]) -> list[OpSpec]:
        """Stem, every block that computes (an identity skip costs nothing), head; keyed by op, shapes and size."""
        arch = self.validate(arch)
        c_in, h, w = (int(s) for s in input_shape)
        s = self.stem_stride
        ops = [OpSpec(f"stem:{c_in}-{STEM_CHANNELS}s{s}@{c_in}x{h}x{w}",
                      lambda c_in=c_in, s=s: conv_norm_relu(c_in, STEM_CHANNELS, 3, s), (c_in, h, w))]  # fmt: skip
        h, w = (h - 1) // s + 1, (w - 1) // s + 1
        for (ci, co, stride), choice in zip(self.layers, arch):
            if not is_identity(choice, ci, co, stride):
                factory = lambda b=choice, ci=ci, co=co, st=stride: fbnet_block(b, ci, co, st)  # noqa: E731
                ops.append(OpSpec(f"fbnet_{choice}:{ci}-{co}s{stride}@{ci}x{h}x{w}", factory, (ci, h, w)))
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
        c_last = self.layers[-1][1]
        head = lambda c=c_last: _head(c, self.header, num_classes)  # noqa: E731
        ops.append(OpSpec(f"fbnet_head:{c_last}-{self.header}-{num_classes}@{c_last}x{h}x{w}", head, (c_last, h, w)))
        return ops

    def build(self, arch: Any, num_classes: int = 100, input_shape: Sequence[int] = (3, 32, 32)) -> nn.Module:
        """``Sequential(stem, block 0, …, block 21, head)``; an identity skip is an ``nn.Identity``."""
        arch = self.validate(arch)
        blocks: list[nn.Module] = [conv_norm_relu(int(input_shape[0]), STEM_CHANNELS, 3, self.stem_stride)]
        blocks += [fbnet_block(c, ci, co, s) for c, (ci, co, s) in zip(arch, self.layers)]
        blocks.append(_head(self.layers[-1][1], self.header, num_classes))
        return nn.Sequential(*blocks)
