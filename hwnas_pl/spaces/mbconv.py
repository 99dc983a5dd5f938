"""MBConv layer-wise space (ProxylessNAS / FBNet style): one inverted-residual choice per searchable layer.

Each searchable layer picks a kernel size in {3, 5, 7} and an expansion ratio in {3, 6}, or ``skip`` where the
layer keeps its input's shape (every layer of a stage but the first). The fixed skeleton around them:

- ``imagenet``: 3×3 stem (32, stride 2) → MBConv e1 k3 (16) → stages of (channels, layers, first stride)
  (24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1) → 1×1 conv 1280 → pool → linear
  (ProxylessNAS's backbone, 224×224 input).
- ``cifar``: the same with stride 1 in the stem and in the first stage (24, 4, 1), for 32×32 inputs.

An architecture is the tuple of layer choices (``mb_k5_e6``, ``skip``, …), written joined by ``-``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.spaces.base import OpSpec, register_search_space
from hwnas_pl.spaces.layerwise import LayerwiseSpace
from hwnas_pl.spaces.supernet import ChoiceLayer, Supernet, rename_prefix

MBCONV_CHOICES = tuple(f"mb_k{k}_e{e}" for k in (3, 5, 7) for e in (3, 6))
SKIP = "skip"
NODE_TYPES = ("input", *MBCONV_CHOICES, SKIP, "output")
SKELETONS = {
    "imagenet": {
        "stem_stride": 2,
        "stages": ((24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1)),
    },
    "cifar": {"stem_stride": 1, "stages": ((24, 4, 1), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))},
}
STEM_CHANNELS, FIRST_CHANNELS, HEAD_CHANNELS = 32, 16, 1280


def parse_choice(choice: str) -> tuple[int, int]:
    """(kernel, expansion) of an ``mb_k{k}_e{e}`` choice."""
    kernel, expand = choice[len("mb_k") :].split("_e")
    return int(kernel), int(expand)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand (if ratio > 1) → k×k depthwise (stride) → 1×1 project.

    ReLU6 after the first two, BatchNorm after each conv, identity shortcut when the shape is kept.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        out = self.body(x)
        return out + x if self.residual else out


def _stem(c_in: int, stride: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c_in, STEM_CHANNELS, 3, stride, 1, bias=False), nn.BatchNorm2d(STEM_CHANNELS), nn.ReLU6(inplace=True)
    )


def _head(c_in: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c_in, HEAD_CHANNELS, 1, bias=False),
        nn.BatchNorm2d(HEAD_CHANNELS),
        nn.ReLU6(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(HEAD_CHANNELS, num_classes),
    )


class MBConvSupernet(Supernet):
    """Stem → first MBConv → a :class:`ChoiceLayer` per searchable layer (``skip``: identity) → head."""

    def __init__(self, space: MBConvSpace, num_classes: int, in_channels: int) -> None:
        super().__init__([space.choices(i) for i in range(len(space.layers))])
        self.stem = _stem(in_channels, space.stem_stride)
        self.first = MBConv(STEM_CHANNELS, FIRST_CHANNELS, 3, 1, 1)
        self.layers = nn.ModuleList(
            ChoiceLayer({c: nn.Identity() if c == SKIP else MBConv(ci, co, *parse_choice(c), stride) for c in choices})
            for (ci, co, stride, _), choices in zip(space.layers, self.choices)
        )
        self.head = _head(space.layers[-1][1], num_classes)

    def _forward(self, x, ops: tuple[str, ...]):
        x = self.first(self.stem(x))
        for layer, op in zip(self.layers, ops):
            x = layer(x, op)
        return self.head(x)

    def places(self, layer: int) -> list[ChoiceLayer]:
        return [self.layers[layer]]

    def _child_key(self, name: str, ops: tuple[str, ...]) -> str | None:
        # space.build is Sequential(stem, first, *non-skip layers, head)
        kept = [i for i, op in enumerate(ops) if op != SKIP]
        if name.startswith("layers."):
            layer, op, rest = name[len("layers.") :].split(".", 2)
            if ops[int(layer)] != op:
                return None
            return f"{2 + kept.index(int(layer))}.{rest}"
        return rename_prefix(name, [(r"stem\.", "0."), (r"first\.", "1."), (r"head\.", f"{2 + len(kept)}.")])


@register_search_space("mbconv")
class MBConvSpace(LayerwiseSpace):
    """Layer-wise MBConv space over a fixed skeleton.

    Args:
        skeleton: ``"cifar"`` (32×32 inputs) or ``"imagenet"`` (224×224).

    Example:
        >>> space = MBConvSpace("cifar")
        >>> space.n_vars, space.cardinalities[:3]
        (21, (6, 7, 7))
    """

    name = "mbconv"
    label = "MBConv"
    node_types = NODE_TYPES

    def __init__(self, skeleton: str = "cifar") -> None:
        if skeleton not in SKELETONS:
            raise ConfigError(f"Unknown MBConv skeleton '{skeleton}'; expected one of: {', '.join(SKELETONS)}.")
        self.skeleton = skeleton
        spec = SKELETONS[skeleton]
        self.stem_stride = spec["stem_stride"]
        # (c_in, c_out, stride, skip allowed) of every searchable layer
        self.layers: list[tuple[int, int, int, bool]] = []
        c = FIRST_CHANNELS
        for c_out, n, stride in spec["stages"]:
            for i in range(n):
                s = stride if i == 0 else 1
                self.layers.append((c, c_out, s, s == 1 and c == c_out))
                c = c_out

    def choices(self, layer: int) -> tuple[str, ...]:
        """The choices of searchable layer ``layer``."""
        return MBCONV_CHOICES + ((SKIP,) if self.layers[layer][3] else ())

    def depth(self, arch: Any) -> int:
        """Stem + first MBConv (2 convs) + 3 convs per MBConv layer + head conv + classifier."""
        return 1 + 2 + 3 * sum(c != SKIP for c in self.validate(arch)) + 1 + 1

    def latency_ops(self, arch: Any, num_classes: int, input_shape: Sequence[int]) -> list[OpSpec]:
        arch = self.validate(arch)
        c_in, h, w = (int(s) for s in input_shape)
        s = self.stem_stride
        ops = [
            OpSpec(
                f"stem:{c_in}-{STEM_CHANNELS}s{s}@{c_in}x{h}x{w}", lambda c_in=c_in, s=s: _stem(c_in, s), (c_in, h, w)
            )
        ]
        h, w = (h - 1) // s + 1, (w - 1) // s + 1
        first = (STEM_CHANNELS, h, w)
        key = f"mb_k3_e1:{STEM_CHANNELS}-{FIRST_CHANNELS}s1@{STEM_CHANNELS}x{h}x{w}"
        ops.append(OpSpec(key, lambda: MBConv(STEM_CHANNELS, FIRST_CHANNELS, 3, 1, 1), first))
        for (ci, co, stride, _), choice in zip(self.layers, arch):
            if choice != SKIP:
                k, e = parse_choice(choice)
                factory = lambda ci=ci, co=co, k=k, e=e, stride=stride: MBConv(ci, co, k, e, stride)  # noqa: E731
                ops.append(OpSpec(f"{choice}:{ci}-{co}s{stride}@{ci}x{h}x{w}", factory, (ci, h, w)))
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
        c_last = self.layers[-1][1]
        head = lambda c=c_last: _head(c, num_classes)  # noqa: E731
        ops.append(OpSpec(f"head:{c_last}-{num_classes}@{c_last}x{h}x{w}", head, (c_last, h, w)))
        return ops

    def build_supernet(self, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32)) -> MBConvSupernet:
        """Every choice of every searchable layer; a path picks one per layer (PRP-NAS §3.3, ProxylessNAS space)."""
        return MBConvSupernet(self, num_classes, int(input_shape[0]))

    def build(self, arch: Any, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32)) -> nn.Module:
        arch = self.validate(arch)
        blocks: list[nn.Module] = [_stem(int(input_shape[0]), self.stem_stride)]
        blocks.append(MBConv(STEM_CHANNELS, FIRST_CHANNELS, 3, 1, 1))
        for (ci, co, stride, _), choice in zip(self.layers, arch):
            if choice != SKIP:
                blocks.append(MBConv(ci, co, *parse_choice(choice), stride))
        blocks.append(_head(self.layers[-1][1], num_classes))
        return nn.Sequential(*blocks)
