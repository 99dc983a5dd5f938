"""NAS-Bench-201 cell space: 5 operations on the 6 edges of a 4-node cell, 15,625 architectures.

An architecture is the tuple of the 6 edge ops in NAS-Bench-201's string order, edges (0→1), (0→2), (1→2),
(0→3), (1→3), (2→3), written ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. The integer encoding uses the same edge
order and NAS-Bench-201's op order :data:`OPS`.

The ``analog-nasbench`` table keys cells by NASLib's ``op_indices``: edges (0→1), (0→2), (0→3), (1→2), (1→3),
(2→3) with op ids 0 skip_connect, 1 none, 2 nor_conv_3x3, 3 nor_conv_1x1, 4 avg_pool_3x3;
:meth:`NASBench201Space.to_anb_tuple` and :meth:`~NASBench201Space.from_anb_tuple` map both ways.

The network is the benchmark's macro skeleton: a 3×3 stem conv with ``C`` channels, three stages of ``N`` cells
with ``C``, ``2C``, ``4C`` channels separated by residual reduction blocks, BN-ReLU, global pooling and a linear
classifier (Dong & Yang, ICLR 2020; thesis §3.2 and §3.3 search on it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.spaces.base import EncodedSpace, OpSpec, register_search_space
from hwnas_pl.spaces.supernet import ChoiceLayer, Supernet, rename_prefix

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: Edges (from node, to node) in NAS-Bench-201's string order.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
#: analog-nasbench / NASLib op ids and edge order.
ANB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
ANB_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
_ANB_FROM_EDGE = [EDGES.index(e) for e in ANB_EDGES]  # ANB position -> our position
NODE_TYPES = ("input", *OPS, "output")
#: The cell's input-to-output node paths as edge positions: 0→3, 0→1→3, 0→2→3, 0→1→2→3.
_CELL_PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))
_PATH_FEATURES = sum((len(OPS) - 1) ** len(p) for p in _CELL_PATHS)


class ReLUConvBN(nn.Sequential):
    """ReLU → Conv (no bias) → BatchNorm, the benchmark's convolution op."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


def make_op(name: str, channels: int) -> nn.Module:
    """The cell op ``name`` on ``channels`` channels (stride 1; ``none`` is never built, its edge is dropped)."""
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ConfigError(f"Unknown NAS-Bench-201 op '{name}'; expected one of: {', '.join(OPS)}.")


class NB201Cell(nn.Module):
    """Node ``j`` is the sum of ``op(i→j)(node i)`` over its incoming edges; the cell outputs node 3."""

    def __init__(self, arch: Sequence[str], channels: int) -> None:
        super().__init__()
        self.edges = [(i, j) for (i, j), op in zip(EDGES, arch) if op != "none"]
        self.ops = nn.ModuleList(make_op(op, channels) for op in arch if op != "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            inputs = [op(nodes[i]) for (i, to), op in zip(self.edges, self.ops) if to == j]
            nodes.append(torch.stack(inputs).sum(0) if inputs else torch.zeros_like(x))
        return nodes[3]


class NoneOp(nn.Module):
    """The ``none`` op in a supernet: its edge adds nothing to the node (kept so that it can be chosen and pruned)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class NB201SuperCell(nn.Module):
    """A cell holding every op on every edge; a path picks one op per edge, as :class:`NB201Cell` computes it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            ChoiceLayer({op: NoneOp() if op == "none" else make_op(op, channels) for op in OPS}) for _ in EDGES
        )

    def forward(self, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            inputs = [
                edge(nodes[i], op) for (i, to), edge, op in zip(EDGES, self.edges, ops) if to == j and op != "none"
            ]
            nodes.append(torch.stack(inputs).sum(0) if inputs else torch.zeros_like(x))
        return nodes[3]


class NodeSum(nn.Module):
    """Sum of ``k`` tensors as a cell node computes it; standalone, it sums ``k`` copies of its input (LUT timing)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x] * self.k).sum(0) if self.k else torch.zeros_like(x)


class ResidualReduction(nn.Module):
    """The benchmark's reduction block: two ReLUConvBN 3×3 (stride 2, then 1) plus an avg-pool + 1×1 shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    """Stem → N cells (C) → reduction → N cells (2C) → reduction → N cells (4C) → BN-ReLU → pool → linear.

    ``arch=None`` builds the supernet skeleton: every cell is an :class:`NB201SuperCell` and :meth:`forward` takes
    the path.
    """

    def __init__(
        self, arch: Sequence[str] | None, num_classes: int, in_channels: int, channels: int, cells: int
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers.extend(NB201Cell(arch, c) if arch is not None else NB201SuperCell(c) for _ in range(cells))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor, ops: Sequence[str] | None = None) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x, ops) if isinstance(layer, NB201SuperCell) else layer(x)
        x = self.lastact(x)
        return self.classifier(self.pool(x).flatten(1))


class NB201Supernet(Supernet):
    """The NAS-Bench-201 network with an :class:`NB201SuperCell` in every cell position; layers are the 6 edges."""

    def __init__(self, num_classes: int, in_channels: int, channels: int, cells: int) -> None:
        super().__init__([OPS] * len(EDGES))
        self.net = NB201Network(None, num_classes, in_channels, channels, cells)

    def _forward(self, x: torch.Tensor, ops: tuple[str, ...]) -> torch.Tensor:
        return self.net(x, ops)

    def places(self, layer: int) -> list[ChoiceLayer]:
        return [cell.edges[layer] for cell in self.net.cells if isinstance(cell, NB201SuperCell)]

    def _child_key(self, name: str, ops: tuple[str, ...]) -> str | None:
        # supernet net.cells.K.edges.E.OP.rest -> NB201Cell cells.K.ops.M.rest (M: position among non-none edges)
        match = re.match(r"net\.cells\.(\d+)\.edges\.(\d+)\.([a-z0-9_]+)\.(.*)", name)
        if match:
            cell, edge, op, rest = match.groups()
            if ops[int(edge)] != op:
                return None
            position = sum(1 for o in ops[: int(edge)] if o != "none")
            return f"cells.{cell}.ops.{position}.{rest}"
        return rename_prefix(name, [(r"net\.", "")])


@register_search_space("nasbench201")
class NASBench201Space(EncodedSpace):
    """The NAS-Bench-201 cell space.

    Args:
        channels: channels of the first stage (16 in the benchmark).
        cells: cells per stage (5 in the benchmark).

    Example:
        >>> space = NASBench201Space()
        >>> arch = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
        >>> space.encode(arch).tolist(), space.to_anb_tuple(arch), space.size()
        ([3, 3, 3, 1, 3, 3], (2, 2, 0, 2, 2, 2), 15625)
    """  # noqa: E501

    name = "nasbench201"
    #: NAS-Bench-201's training recipe for a cell (Dong & Yang 2020, §2.3): SGD with Nesterov momentum 0.9, lr 0.1
    #: annealed to 0 by a cosine, weight decay 5e-4, batch 256, 200 epochs; what a searched cell is retrained with
    retrain_recipe = {
        "optimizer": {
            "class_path": "torch.optim.SGD",
            "init_args": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005},
        },
        "scheduler": {"class_path": "torch.optim.lr_scheduler.CosineAnnealingLR", "init_args": {"T_max": 200}},
        "batch_size": 256,
        "max_epochs": 200,
    }

    def __init__(self, channels: int = 16, cells: int = 5) -> None:
        if channels < 1 or cells < 1:
            raise ConfigError(f"NASBench201Space needs channels and cells >= 1, got {channels} and {cells}.")
        self.channels = channels
        self.cells = cells

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return (len(OPS),) * len(EDGES)

    def _validate(self, arch: Any) -> tuple[str, ...]:
        if not isinstance(arch, (tuple, list)) or len(arch) != len(EDGES):
            raise ConfigError(
                f"A NAS-Bench-201 architecture is a sequence of {len(EDGES)} op names (one per edge) or its string "
                f"'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|', got {arch!r}."
            )
        unknown = [op for op in arch if op not in OPS]
        if unknown:
            raise ConfigError(f"Unknown NAS-Bench-201 op '{unknown[0]}'; expected one of: {', '.join(OPS)}.")
        return tuple(arch)

    def _encode(self, arch: tuple[str, ...]) -> np.ndarray:
        return np.array([OPS.index(op) for op in arch])

    def _decode(self, vector: np.ndarray) -> tuple[str, ...]:
        return tuple(OPS[int(v)] for v in vector)

    def _to_string(self, arch: tuple[str, ...]) -> str:
        nodes = []
        for j in (1, 2, 3):
            nodes.append("|" + "|".join(f"{arch[k]}~{i}" for k, (i, to) in enumerate(EDGES) if to == j) + "|")
        return "+".join(nodes)

    def _from_string(self, text: str) -> tuple[str, ...]:
        expected = "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"
        nodes = text.split("+")
        ops: dict[tuple[int, int], str] = {}
        if len(nodes) != 3:
            raise ConfigError(f"NAS-Bench-201 string {text!r} has {len(nodes)} nodes; expected 3, as in {expected}.")
        for j, node in enumerate(nodes, start=1):
            items = [item for item in node.strip("|").split("|") if item]
            if len(items) != j:
                raise ConfigError(
                    f"NAS-Bench-201 string {text!r}: node {j} has {len(items)} inputs; expected {j}, as in {expected}."
                )
            for item in items:
                op, _, src = item.partition("~")
                if not src.isdigit() or int(src) >= j:
                    raise ConfigError(f"NAS-Bench-201 string {text!r}: '{item}' is not 'op~input' with input < {j}.")
                ops[(int(src), j)] = op
        if len(ops) != len(EDGES):
            raise ConfigError(f"NAS-Bench-201 string {text!r} repeats an input; expected {expected}.")
        return self._validate(tuple(ops[e] for e in EDGES))

    def to_anb_tuple(self, arch: Any) -> tuple[int, ...]:
        """``analog-nasbench`` / NASLib ``op_indices`` of ``arch``."""
        arch = self.validate(arch)
        return tuple(ANB_OPS.index(arch[k]) for k in _ANB_FROM_EDGE)

    def from_anb_tuple(self, key: Sequence[int]) -> tuple[str, ...]:
        """Architecture of an ``analog-nasbench`` / NASLib ``op_indices`` tuple."""
        key = tuple(int(k) for k in key)
        if len(key) != len(ANB_EDGES) or any(not 0 <= k < len(ANB_OPS) for k in key):
            raise ConfigError(
                f"An analog-nasbench key is {len(ANB_EDGES)} op ids in 0..{len(ANB_OPS) - 1} on the edges "
                f"{ANB_EDGES}, got {key}."
            )
        arch = [""] * len(EDGES)
        for anb_pos, ours in enumerate(_ANB_FROM_EDGE):
            arch[ours] = ANB_OPS[key[anb_pos]]
        return tuple(arch)

    def anb_indices(self, keys: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Enumeration indices of many ``analog-nasbench`` tuples at once (rows of ``keys``), vectorised."""
        keys = np.asarray(keys, dtype=np.int64).reshape(-1, len(ANB_EDGES))
        if keys.size and (keys.min() < 0 or keys.max() >= len(ANB_OPS)):
            raise ConfigError(f"analog-nasbench op ids lie in 0..{len(ANB_OPS) - 1}.")
        ours = np.empty_like(keys)
        ours[:, _ANB_FROM_EDGE] = np.asarray([OPS.index(op) for op in ANB_OPS])[keys]
        return ours @ (len(OPS) ** np.arange(len(EDGES) - 1, -1, -1))

    def tokens(self, arch: Any) -> list[str]:
        return list(self.validate(arch))

    def graph(self, arch: Any) -> tuple[np.ndarray, np.ndarray]:
        """Ops as nodes: input, the 6 edge ops (string order), output; op one-hot over :data:`NODE_TYPES`."""
        arch = self.validate(arch)
        n = len(EDGES) + 2
        adjacency = np.zeros((n, n), dtype=np.float32)
        for k, (i, j) in enumerate(EDGES):
            if i == 0:
                adjacency[0, k + 1] = 1
            for m, (_, j2) in enumerate(EDGES):
                if j2 == i:
                    adjacency[m + 1, k + 1] = 1
            if j == 3:
                adjacency[k + 1, n - 1] = 1
        onehot = np.zeros((n, len(NODE_TYPES)), dtype=np.float32)
        onehot[0, 0] = onehot[n - 1, -1] = 1
        for k, op in enumerate(arch):
            onehot[k + 1, NODE_TYPES.index(op)] = 1
        return adjacency, onehot

    def encoding_features(self, arch: Any) -> np.ndarray:
        """Op one-hot per edge (30) followed by the path encoding (100).

        The path encoding (White et al., BANANAS, 2021) marks which op sequence runs along each of the cell's four
        input-to-output node paths (0→3, 0→1→3, 0→2→3, 0→1→2→3); paths through ``none`` carry nothing. Cells that
        compute the same function share it.
        """
        vector = self.encode(arch)
        onehot = np.zeros((len(EDGES), len(OPS)))
        onehot[np.arange(len(EDGES)), vector] = 1
        paths = np.zeros(_PATH_FEATURES)
        offset = 0
        for path in _CELL_PATHS:
            code = 0
            for edge in path:
                op = int(vector[edge])
                if op == 0:  # 'none' cuts the path
                    code = -1
                    break
                code = code * (len(OPS) - 1) + op - 1
            if code >= 0:
                paths[offset + code] = 1
            offset += (len(OPS) - 1) ** len(path)
        return np.concatenate([onehot.ravel(), paths])

    def cell_depth(self, arch: Any) -> int:
        """Convolutions on the longest path from node 0 to node 3 (``-1`` if node 3 is unreachable)."""
        arch = self.validate(arch)
        longest = [0, -1, -1, -1]
        for (i, j), op in sorted(zip(EDGES, arch), key=lambda e: e[0][1]):
            if op != "none" and longest[i] >= 0:
                longest[j] = max(longest[j], longest[i] + (op.startswith("nor_conv")))
        return longest[3]

    def depth(self, arch: Any) -> int:
        """Stem + cells' longest conv paths + 2 convs per reduction + classifier."""
        return 1 + 3 * self.cells * max(self.cell_depth(arch), 0) + 2 * 2 + 1

    def latency_ops(self, arch: Any, num_classes: int, input_shape: Sequence[int]) -> list[OpSpec]:
        """Stem, every cell op and node sum, the reductions and the head, with their input shapes (no network)."""
        arch = self.validate(arch)
        c_in, h, w = (int(s) for s in input_shape)
        c = self.channels
        ops = [
            OpSpec(
                f"stem:{c_in}-{c}@{c_in}x{h}x{w}",
                lambda c_in=c_in, c=c: nn.Sequential(nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)),
                (c_in, h, w),
            )
        ]
        fan_in = [sum(1 for (i, to), op in zip(EDGES, arch) if to == j and op != "none") for j in (1, 2, 3)]
        for stage in range(3):
            if stage:
                ops.append(
                    OpSpec(f"reduction:{c}-{2 * c}@{c}x{h}x{w}", lambda c=c: ResidualReduction(c, 2 * c), (c, h, w))
                )
                c, h, w = 2 * c, (h + 1) // 2, (w + 1) // 2
            shape = (c, h, w)
            cell = [
                OpSpec(f"{op}:{c}@{c}x{h}x{w}", lambda op=op, c=c: make_op(op, c), shape) for op in arch if op != "none"
            ]
            cell += [OpSpec(f"sum{k}@{c}x{h}x{w}", lambda k=k: NodeSum(k), shape) for k in fan_in if k != 1]
            ops.extend(cell * self.cells)
        head = lambda c=c: nn.Sequential(  # noqa: E731
            nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)
        )
        ops.append(OpSpec(f"head:{c}-{num_classes}@{c}x{h}x{w}", head, (c, h, w)))
        return ops

    def build_supernet(self, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32)) -> NB201Supernet:
        """Every op on every edge of every cell; a path picks one op per edge (PRP-NAS §3.3 on NAS-Bench-201)."""
        return NB201Supernet(num_classes, int(input_shape[0]), self.channels, self.cells)

    def stage_modules(self, net: nn.Module, input_shape: Sequence[int] = (3, 32, 32)) -> list[nn.Module]:
        """The last cell of the first two stages and ``lastact`` (BN-ReLU after the third), RMI-NAS's three stages."""
        n = self.cells
        return [net.cells[n - 1], net.cells[2 * n], net.lastact]

    def build(self, arch: Any, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32)) -> nn.Module:
        arch = self.validate(arch)
        return NB201Network(arch, num_classes, int(input_shape[0]), self.channels, self.cells)
