"""Layer-wise spaces: a fixed chain of searchable layers, each picking one op by name (MBConv, FBNet).

An architecture is the tuple of the layers' op names, written joined by ``-``; its integer vector holds each op's
index among its layer's :meth:`LayerwiseSpace.choices`. The GCN encoder (HW-PR-NAS §3.2) sees the chain
input → layer 0 → … → output with an op one-hot over :attr:`LayerwiseSpace.node_types`; the LSTM sees the op names.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError
from hwnas_pl.spaces.base import EncodedSpace


class LayerwiseSpace(EncodedSpace):
    """Base of the spaces whose architecture is one op name per searchable layer of a fixed skeleton.

    Subclasses set :attr:`label`, :attr:`node_types` and ``self.layers`` (one entry per searchable layer), and
    define :meth:`choices`.
    """

    #: what messages call the space
    label: str = "layer-wise"
    #: the GCN's node types: ``"input"``, every op name, ``"output"``
    node_types: tuple[str, ...] = ()
    layers: list[tuple]

    @abstractmethod
    def choices(self, layer: int) -> tuple[str, ...]:
        """The op names searchable layer ``layer`` chooses from, in encoding order."""

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(len(self.choices(i)) for i in range(len(self.layers)))

    def _validate(self, arch: Any) -> tuple[str, ...]:
        if not isinstance(arch, (tuple, list)) or len(arch) != len(self.layers):
            raise ConfigError(
                f"An {self.label} architecture is a sequence of {len(self.layers)} layer choices, got {arch!r}."
            )
        for i, choice in enumerate(arch):
            if choice not in self.choices(i):
                raise ConfigError(f"Unknown choice '{choice}' for {self.label} layer {i}; expected one of: "
                                  f"{', '.join(self.choices(i))}.")  # fmt: skip
        return tuple(arch)

    def _encode(self, arch: tuple[str, ...]) -> np.ndarray:
        return np.array([self.choices(i).index(c) for i, c in enumerate(arch)])

    def _decode(self, vector: np.ndarray) -> tuple[str, ...]:
        return tuple(self.choices(i)[int(v)] for i, v in enumerate(vector))

    def _to_string(self, arch: tuple[str, ...]) -> str:
        return "-".join(arch)

    def _from_string(self, text: str) -> tuple[str, ...]:
        return self._validate(tuple(text.split("-")))

    def tokens(self, arch: Any) -> list[str]:
        return list(self.validate(arch))

    def graph(self, arch: Any) -> tuple[np.ndarray, np.ndarray]:
        """A chain: input → layer 0 → … → last layer → output; op one-hot over :attr:`node_types`."""
        arch = self.validate(arch)
        n = len(arch) + 2
        onehot = np.zeros((n, len(self.node_types)), dtype=np.float32)
        onehot[0, 0] = onehot[-1, -1] = 1
        for i, choice in enumerate(arch):
            onehot[i + 1, self.node_types.index(choice)] = 1
        return np.eye(n, k=1, dtype=np.float32), onehot
