r"""Architecture encoders of HW-PR-NAS (thesis §3.2, Table 3.1) and its Pareto-score network, over any space.

An architecture enters as three views, made once by :func:`encode_architectures` from the space's own methods:

- **AF**: :data:`~hwnas_pl.surrogates.base.FEATURES` (FLOPs, parameters, convolutions, input size, depth, first and
  last channels, down-samplings) of :meth:`~hwnas_pl.spaces.base.SearchSpace.features`, log1p of the counts and
  standardised with the training set's mean and deviation;
- **graph**: :meth:`~hwnas_pl.spaces.base.SearchSpace.graph` (adjacency, op one-hot), padded to the largest graph;
- **tokens**: :meth:`~hwnas_pl.spaces.base.SearchSpace.tokens` as vocabulary ids (0 = padding, 1 = unknown).

:class:`ArchitectureEncoder` concatenates the AF vector (as is), a GCN (Kipf & Welling: two layers of
:math:`H' = \mathrm{ReLU}(\hat A H W)`, :math:`\hat A = D^{-1/2}(A + A^\top + I)D^{-1/2}`, hidden 128, mean over the
real nodes, dense 32) and an LSTM (embedding 32, two stacked LSTMs of 32 and 64 units with dropout 0.2 between, the
state at the last real token, dense 32). Table 3.1's "hidden depth 128, hidden dimension 1" is read as 2 GCN layers
of 128 units; its "recurrent dropout 0.2" as dropout between the two LSTMs (cuDNN-friendly). :class:`TokenDecoder`
reconstructs the token sequence from the encoding (pre-training, cross-entropy). :class:`ParetoScoreNet` adds one
head per hardware platform ("target HW id"): 3 fully connected layers to one logit; the Pareto score is its
sigmoid, in (0, 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas_pl.errors import ConfigError

PARTS = ("af", "gcn", "lstm")
PAD, UNKNOWN = 0, 1


def build_vocabulary(space, archs: Sequence[Any]) -> dict[str, int]:
    """Token -> id over ``archs`` (ids from 2; 0 pads, 1 is an unseen token)."""
    tokens = sorted({t for a in archs for t in space.tokens(space.validate(a))})
    return {t: i + 2 for i, t in enumerate(tokens)}


def encode_architectures(
    space,
    archs: Sequence[Any],
    input_shape: Sequence[int],
    num_classes: int,
    stats: Mapping[str, Any] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The three views of ``archs`` as tensors, and the statistics that encode others the same way.

    ``stats`` (from an earlier call on the training set: feature mean/std, vocabulary, graph and sequence sizes)
    fixes the encoding; without it they are computed from ``archs``.
    """
    from hwnas_pl.surrogates.base import FEATURES

    archs = [space.validate(a) for a in archs]
    raw = np.array([[space.features(a, input_shape, num_classes)[f] for f in FEATURES] for a in archs], dtype=float)
    raw = np.log1p(np.maximum(raw, 0.0))
    graphs = [space.graph(a) for a in archs]
    tokens = [space.tokens(a) for a in archs]
    if stats is None:
        std = raw.std(0)
        stats = {
            "mean": raw.mean(0).tolist(),
            "std": np.where(std > 1e-9, std, 1.0).tolist(),  # a constant feature (rounding: ~1e-15) stays 0
            "vocabulary": build_vocabulary(space, archs),
            "nodes": max(g[0].shape[0] for g in graphs),
            "node_types": max(g[1].shape[1] for g in graphs),
            "length": max(len(t) for t in tokens),
        }
    n, nodes, types, length = len(archs), stats["nodes"], stats["node_types"], stats["length"]
    adjacency = np.zeros((n, nodes, nodes), dtype=np.float32)
    onehot = np.zeros((n, nodes, types), dtype=np.float32)
    mask = np.zeros((n, nodes), dtype=np.float32)
    ids = np.zeros((n, length), dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    for i, ((adj, oh), toks) in enumerate(zip(graphs, tokens)):
        k, t = adj.shape[0], oh.shape[1]
        if k > nodes or t > types or len(toks) > length:
            raise ConfigError(
                f"Architecture {space.to_string(archs[i])} has a graph of {k} nodes / {t} op types or {len(toks)} "
                f"tokens; the encoder was built for at most {nodes} / {types} / {length}."
            )
        adjacency[i, :k, :k], onehot[i, :k, :t], mask[i, :k] = adj, oh, 1.0
        ids[i, : len(toks)] = [stats["vocabulary"].get(tok, UNKNOWN) for tok in toks]
        lengths[i] = len(toks)
    af = (raw - np.asarray(stats["mean"])) / np.asarray(stats["std"])
    views = {
        "af": torch.tensor(af, dtype=torch.float32),
        "adjacency": torch.from_numpy(adjacency),
        "onehot": torch.from_numpy(onehot),
        "node_mask": torch.from_numpy(mask),
        "tokens": torch.from_numpy(ids),
        "lengths": torch.from_numpy(lengths),
    }
    return views, dict(stats)


class GCNEncoder(nn.Module):
    """Two Kipf GCN layers over the symmetrised, self-looped, degree-normalised adjacency, mean-pooled, dense."""

    def __init__(self, node_types: int, hidden: int = 128, layers: int = 2, out: int = 32) -> None:
        super().__init__()
        dims = [node_types] + [hidden] * layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.out = nn.Linear(hidden, out)

    def forward(self, adjacency: torch.Tensor, onehot: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        a = adjacency + adjacency.transpose(1, 2) + torch.diag_embed(node_mask)
        a = a.clamp(max=1.0) * node_mask[:, :, None] * node_mask[:, None, :]
        d = a.sum(2).clamp_min(1.0).rsqrt()
        a_hat = d[:, :, None] * a * d[:, None, :]
        h = onehot
        for layer in self.layers:
            h = torch.relu(a_hat @ layer(h))
        pooled = (h * node_mask[:, :, None]).sum(1) / node_mask.sum(1, keepdim=True).clamp_min(1.0)
        return torch.relu(self.out(pooled))


class LSTMEncoder(nn.Module):
    """Token embedding, LSTMs of ``hidden`` units stacked (dropout between), the last real state, dense."""

    def __init__(
        self, vocabulary: int, embedding: int = 32, hidden: Sequence[int] = (32, 64), out: int = 32, dropout=0.2
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, embedding, padding_idx=PAD)
        dims = [embedding, *hidden]
        self.lstms = nn.ModuleList(nn.LSTM(a, b, batch_first=True) for a, b in zip(dims, dims[1:]))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dims[-1], out)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.embedding(tokens)
        for i, lstm in enumerate(self.lstms):
            h = lstm(self.dropout(h) if i else h)[0]
        last = h[torch.arange(len(h)), (lengths - 1).clamp_min(0)]
        return torch.relu(self.out(last))


class ArchitectureEncoder(nn.Module):
    """The concatenation of the chosen ``parts`` (``af``, ``gcn``, ``lstm``; Fig. 3.4's ablation picks subsets).

    Args:
        stats: of :func:`encode_architectures` (feature count, node types, vocabulary size).
        parts: which encodings to concatenate.
    """

    def __init__(self, stats: Mapping[str, Any], parts: Sequence[str] = PARTS) -> None:
        super().__init__()
        unknown = [p for p in parts if p not in PARTS]
        if unknown or not parts:
            raise ConfigError(f"Unknown encoder part '{(unknown or [''])[0]}'; expected some of: {', '.join(PARTS)}.")
        self.parts = tuple(parts)
        self.gcn = GCNEncoder(int(stats["node_types"])) if "gcn" in parts else None
        self.lstm = LSTMEncoder(len(stats["vocabulary"]) + 2) if "lstm" in parts else None
        self.out_features = (len(stats["mean"]) if "af" in parts else 0) + 32 * (("gcn" in parts) + ("lstm" in parts))

    def forward(self, views: Mapping[str, torch.Tensor]) -> torch.Tensor:
        out = []
        if "af" in self.parts:
            out.append(views["af"])
        if self.gcn is not None:
            out.append(self.gcn(views["adjacency"], views["onehot"], views["node_mask"]))
        if self.lstm is not None:
            out.append(self.lstm(views["tokens"], views["lengths"]))
        return torch.cat(out, dim=1)


class TokenDecoder(nn.Module):
    """Reconstructs the token sequence from an encoding (pre-training, cross-entropy over the real tokens)."""

    def __init__(self, in_features: int, vocabulary: int, length: int, hidden: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.length = length
        self.lstm = nn.LSTM(in_features, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, vocabulary)

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, length, vocabulary)``."""
        return self.out(self.lstm(encoding[:, None, :].expand(-1, self.length, -1))[0])

    def loss(self, encoding: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        logits = self(encoding)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1), ignore_index=PAD)


class ParetoScoreNet(nn.Module):
    """Encoder + one 3-layer head per hardware platform; :meth:`forward` gives the logits, :meth:`score` (0, 1).

    Args:
        stats: of :func:`encode_architectures`.
        devices: the platforms' names (one head each, in order: the "target HW id" is the index).
        parts: the encoder's parts.
        hidden: widths of the heads' two hidden layers.
    """

    def __init__(
        self, stats: Mapping[str, Any], devices: Sequence[str] = ("default",), parts: Sequence[str] = PARTS,
        hidden: Sequence[int] = (64, 32),
    ) -> None:  # fmt: skip
        super().__init__()
        if not devices:
            raise ConfigError("ParetoScoreNet needs at least one device head.")
        self.devices = list(devices)
        self.encoder = ArchitectureEncoder(stats, parts)
        dims = [self.encoder.out_features, *hidden]

        def head() -> nn.Sequential:
            layers: list[nn.Module] = []
            for a, b in zip(dims, dims[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            return nn.Sequential(*layers, nn.Linear(dims[-1], 1))

        self.heads = nn.ModuleList(head() for _ in self.devices)

    def device_index(self, device: str | int) -> int:
        if isinstance(device, int):
            return device
        if device not in self.devices:
            raise ConfigError(f"No head for device '{device}'; the network has: {', '.join(self.devices)}.")
        return self.devices.index(device)

    def forward(self, views: Mapping[str, torch.Tensor], device: str | int = 0) -> torch.Tensor:
        return self.heads[self.device_index(device)](self.encoder(views)).squeeze(1)

    def score(self, views: Mapping[str, torch.Tensor], device: str | int = 0) -> torch.Tensor:
        """The Pareto score in (0, 1): higher = a better front."""
        return torch.sigmoid(self(views, device))
