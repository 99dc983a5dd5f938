"""The one search-space abstraction every method speaks.

An architecture is the space's own immutable, hashable value (a tuple of op names for a cell space).
:class:`SearchSpace` is any space: validate, strings, sample, mutate, crossover, graph/tokens views, build; a
variable-size operator DAG is one. :class:`EncodedSpace` adds a fixed-length integer vector per architecture,
position ``i`` taking values ``0 .. cardinalities[i] - 1``: the encoding that NSGA-II, LHS, pymoo, BO and benchmark
tables share (every space of the package is one). Subclasses implement the ``_``-prefixed hooks and :meth:`build`;
the public methods validate their input and stay fixed.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.registry import Registry
from hwnas_pl.rng import isolated_rng

Arch = Hashable


@dataclass(frozen=True)
class OpSpec:
    """One op of a network as a per-op latency lookup table sees it.

    Attributes:
        key: identifies the op, its configuration and its input shape (equal keys have equal latency).
        build: makes the op as a standalone module.
        input_shape: shape of one input sample (without batch dimension).
    """

    key: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]


class SearchSpace(ABC):
    """Base class of every search space: architectures as the space's own values, sampled and varied by the space.

    A space need not be a fixed-length vector (an operator DAG of variable size is a space): subclasses define
    ``name``, ``_validate``, ``_to_string``/``_from_string``, ``_sample``/``_mutate``/``_crossover``, :meth:`tokens`,
    :meth:`graph`, :meth:`depth` and :meth:`build`. Spaces that map every architecture to a fixed-length integer
    vector derive from :class:`EncodedSpace`, which gives NSGA-II, LHS, enumeration and tabular lookups.
    """

    name: str = "space"

    # ------------------------------------------------------------------ TO BE OVERWRITTEN
    @abstractmethod
    def _to_string(self, arch: Arch) -> str:
        """Human-readable string of an architecture."""

    @abstractmethod
    def _from_string(self, text: str) -> Arch:
        """Architecture of a string written by :meth:`to_string` (raise ConfigError when malformed)."""

    @abstractmethod
    def _validate(self, arch: Any) -> Arch:
        """``arch`` in canonical form, or ConfigError naming what is wrong with it."""

    @abstractmethod
    def tokens(self, arch: Arch) -> list[str]:
        """Op-name sequence of ``arch`` (input of the LSTM encoder, HW-PR-NAS §3.2)."""

    @abstractmethod
    def graph(self, arch: Arch) -> tuple[np.ndarray, np.ndarray]:
        """(adjacency ``(n, n)``, op one-hot ``(n, n_op_types)``) of ``arch`` (input of the GCN encoder)."""

    @abstractmethod
    def depth(self, arch: Arch) -> int:
        """Weight layers (convolutions and linear layers) on the longest input-to-output path of ``arch``."""

    @abstractmethod
    def build(self, arch: Arch, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
        """A trainable network of ``arch`` for ``num_classes`` outputs and inputs of ``input_shape``."""

    def _sample(self, n: int, rng: np.random.Generator, method: str) -> list[Arch]:
        """``n`` architectures drawn with ``rng`` (``method`` as the space understands it)."""
        raise NotImplementedError

    def _mutate(self, arch: Arch, rng: np.random.Generator, prob: float | None) -> Arch:
        raise NotImplementedError

    def _crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> tuple[Arch, Arch]:
        raise NotImplementedError

    def build_supernet(self, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
        """A weight-sharing :class:`~hwnas_pl.spaces.supernet.Supernet` of the space (spaces that have one)."""
        raise ConfigError(
            f"The {self.name} space has no weight-sharing supernet; expected a space that builds one "
            "(nasbench201, mbconv)."
        )

    def stage_modules(self, net: nn.Module, input_shape: Sequence[int]) -> list[nn.Module]:
        """The modules whose outputs are ``net``'s stage representations, one per spatial resolution, in order.

        What representation-similarity proxies (HW-EvRSNAS Eq. 2) pair with a reference model's stages. Default,
        for a network built as an ``nn.Sequential``: the last child at each resolution of a probe forward on
        ``input_shape`` (children whose output is not a 4-d map, the head, are left out).

        Raises:
            ConfigError: when the network is not a Sequential of blocks (the space must override this).
        """
        if not isinstance(net, nn.Sequential):
            raise ConfigError(
                f"The {self.name} space does not name its stage outputs; expected a space that defines "
                "stage_modules (nasbench201, mbconv) or a network built as an nn.Sequential of blocks."
            )
        sizes: list[tuple[int, ...] | None] = []
        x = torch.zeros((2, *input_shape))
        was_training = net.training
        net.eval()
        with torch.no_grad():
            for child in net:
                x = child(x)
                sizes.append(tuple(x.shape[2:]) if x.ndim == 4 else None)
        net.train(was_training)
        children = list(net)
        return [
            children[i]
            for i, size in enumerate(sizes)
            if size is not None and (i + 1 == len(sizes) or sizes[i + 1] != size)
        ]

    def config(self) -> dict[str, Any]:
        """``{class_path, init_args}`` that rebuilds this space from a YAML config (its ``__init__`` arguments)."""
        params = inspect.signature(type(self).__init__).parameters
        init_args = {k: getattr(self, k) for k in params if k != "self" and hasattr(self, k)}
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": init_args}

    # ------------------------------------------------------------------ public API
    def size(self) -> int | None:
        """Number of architectures, or ``None`` when the space is not enumerable."""
        return None

    def validate(self, arch: Any) -> Arch:
        """``arch`` in canonical form; a string is parsed with :meth:`from_string`.

        Raises:
            ConfigError: naming what is wrong with ``arch`` and what the space expects.
        """
        if isinstance(arch, str):
            return self.from_string(arch)
        return self._validate(arch)

    def to_string(self, arch: Any) -> str:
        """Human-readable string of ``arch`` (round-trips through :meth:`from_string`)."""
        return self._to_string(self.validate(arch))

    def from_string(self, text: str) -> Arch:
        """Architecture of a string written by :meth:`to_string`."""
        return self._from_string(text.strip())

    def constraint(self) -> str | None:
        """The space's constraint in words (e.g. a parameter budget), or ``None`` when it has none."""
        return None

    def is_feasible(self, arch: Any) -> bool:
        """Whether ``arch`` meets the space's constraint (default: every architecture does)."""
        self.validate(arch)
        return True

    def sample(self, n: int, rng: np.random.Generator, method: str = "uniform") -> list[Arch]:
        """``n`` architectures drawn with ``rng``."""
        return self._sample(n, rng, method)

    def sample_like(self, arch: Any, n: int, rng: np.random.Generator, method: str = "lhs") -> list[Arch]:
        """``n`` architectures drawn from the same hypercube as ``arch`` (default: the whole space).

        AnalogNAS's replacement of a constraint violator (thesis §5.3.3: "sampled from the same hypercube dimension
        as the previous one"); spaces whose encoding length depends on the architecture fix that length.
        """
        self.validate(arch)
        return self.sample(n, rng, method)

    def mutate(self, arch: Any, rng: np.random.Generator, prob: float | None = None) -> Arch:
        """A variation of ``arch``."""
        return self._mutate(self.validate(arch), rng, prob)

    def crossover(self, a: Any, b: Any, rng: np.random.Generator) -> tuple[Arch, Arch]:
        """Two children of ``a`` and ``b``."""
        return self._crossover(self.validate(a), self.validate(b), rng)

    def enumerate(self) -> Iterator[Arch]:
        """Every architecture (encoded spaces only)."""
        raise ConfigError(f"The {self.name} space cannot be enumerated; expected a finite encoded space.")

    def latency_ops(self, arch: Any, num_classes: int, input_shape: Sequence[int]) -> list[OpSpec]:
        """The ops whose latencies add up to the network's, one entry per executed op (PRP-NAS §3.3 LUT).

        Default: every leaf module of the built network, found with forward hooks, keyed by its description and
        input shape. Spaces override this with a symbolic version that needs no network.
        """
        with isolated_rng():  # built to be inspected: the global generators stay where they were
            net = self.build(self.validate(arch), num_classes, input_shape).eval()
        seen: list[OpSpec] = []

        def hook(module: nn.Module, inputs: tuple) -> None:
            shape = tuple(int(s) for s in inputs[0].shape[1:])
            key = f"{' '.join(repr(module).split())}@{'x'.join(map(str, shape))}"
            seen.append(OpSpec(key, lambda m=module: copy.deepcopy(m), shape))

        leaves = [m for m in net.modules() if not list(m.children())]
        handles = [m.register_forward_pre_hook(hook) for m in leaves]
        try:
            with torch.no_grad():
                net(torch.zeros(1, *input_shape))
        finally:
            for h in handles:
                h.remove()
        return seen

    def count(self, arch: Any, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32)):
        """MACs, parameters and executed layers of ``arch`` (:class:`~hwnas_pl.nn.counting.NetworkCounts`).

        Counted op by op over :meth:`latency_ops`, each distinct op once per space instance, so counting many
        architectures costs little more than their op lists.
        """
        from hwnas_pl.nn.counting import NetworkCounts, count_network, first_spatial

        cache = self.__dict__.setdefault("_op_counts", {})
        shape = tuple(int(s) for s in input_shape)
        total = NetworkCounts(macs=0, params=0, spatial_sizes=first_spatial(shape))
        for op in self.latency_ops(self.validate(arch), num_classes, shape):
            if op.key not in cache:
                with isolated_rng():  # ops built to be counted leave the global generators alone
                    cache[op.key] = count_network(op.build(), op.input_shape)
            part = cache[op.key]
            total.macs += part.macs
            total.params += part.params
            total.layers.extend(part.layers)
            total.spatial_sizes.extend(part.spatial_sizes[len(first_spatial(op.input_shape)) :])
        return total

    def encoding_features(self, arch: Any) -> np.ndarray:
        """Fixed-length numeric description of ``arch`` for surrogate models (default: op-type counts of its graph)."""
        return self.graph(self.validate(arch))[1].sum(axis=0).astype(np.float64)

    def features(self, arch: Any, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10) -> dict[str, float]:
        """The thesis's architecture features (HW-PR-NAS §3.2 "AF"), from :meth:`count` and :meth:`depth`.

        ``flops`` (2 × multiply-accumulates of convolutions and linear layers) and ``params`` for one input of
        ``input_shape``; ``n_convs`` (convolutions executed), ``input_size`` (height), ``depth``,
        ``first_channels``/``last_channels`` (output channels of the first and last convolution) and
        ``downsamplings`` (how many times the feature map shrinks).
        """
        arch = self.validate(arch)
        counts = self.count(arch, num_classes, input_shape)
        return {
            "flops": float(counts.flops),
            "params": float(counts.params),
            "n_convs": float(counts.n_convs),
            "input_size": float(input_shape[-2]),
            "depth": float(self.depth(arch)),
            "first_channels": float(counts.first_channels),
            "last_channels": float(counts.last_channels),
            "downsamplings": float(counts.downsamplings),
        }


class EncodedSpace(SearchSpace):
    """A space whose every architecture is also a fixed-length integer vector (NSGA-II, LHS, BO, tables).

    Position ``i`` takes values ``0 .. cardinalities[i] - 1``: the encoding that samplers, evolutionary operators,
    pymoo, surrogates and benchmark tables share. Subclasses add :attr:`cardinalities` and ``_decode``/``_encode``;
    sampling, mutation, crossover and enumeration work on the vectors, keeping to :meth:`_feasible`.
    """

    # ------------------------------------------------------------------ TO BE OVERWRITTEN
    @property
    @abstractmethod
    def cardinalities(self) -> tuple[int, ...]:
        """Number of choices at each position of the integer encoding."""

    @abstractmethod
    def _decode(self, vector: np.ndarray) -> Arch:
        """Architecture of a validated integer vector."""

    @abstractmethod
    def _encode(self, arch: Arch) -> np.ndarray:
        """Integer vector of a validated architecture."""

    # ------------------------------------------------------------------ public API
    @property
    def n_vars(self) -> int:
        """Length of the integer encoding."""
        return len(self.cardinalities)

    def size(self) -> int:
        """Number of distinct integer vectors (architectures) in the space."""
        return math.prod(self.cardinalities)

    def encode(self, arch: Any) -> np.ndarray:
        """Integer vector of ``arch`` (``int64``, length :attr:`n_vars`)."""
        return np.asarray(self._encode(self.validate(arch)), dtype=np.int64)

    def decode(self, vector: Sequence[int] | np.ndarray) -> Arch:
        """Architecture of an integer vector.

        Raises:
            ConfigError: when the vector has the wrong length or a value outside its position's range.
        """
        v = np.asarray(vector)
        if v.shape != (self.n_vars,):
            raise ConfigError(
                f"{self.name} encodes an architecture as {self.n_vars} integers, got shape {tuple(v.shape)}."
            )
        v = np.rint(v).astype(np.int64)
        card = np.asarray(self.cardinalities)
        bad = np.flatnonzero((v < 0) | (v >= card))
        if bad.size:
            i = int(bad[0])
            raise ConfigError(
                f"{self.name} position {i} must lie in 0..{card[i] - 1}, got {int(v[i])} (vector {v.tolist()})."
            )
        return self._decode(v)

    def _feasible(self, vectors: np.ndarray) -> np.ndarray:
        """Mask of the rows of ``vectors`` (integer encodings) that meet the space's constraints; default: all."""
        return np.ones(len(vectors), dtype=bool)

    def _hypercube(self, arch: Arch) -> dict[int, int]:
        """Positions (and values) that define the hypercube ``arch`` lies in; default: none (one hypercube)."""
        return {}

    def _draw(
        self, n: int, rng: np.random.Generator, method: str, fixed: Mapping[int, int] | None = None
    ) -> np.ndarray:
        """``n`` integer vectors drawn uniformly or by Latin-hypercube sampling, constraints ignored.

        Positions in ``fixed`` take its values (the other positions are stratified as usual).
        """
        card = np.asarray(self.cardinalities)
        if method == "uniform":
            out = rng.integers(0, card, size=(n, self.n_vars))
        elif method == "lhs":
            strata = np.stack([rng.permutation(n) for _ in range(self.n_vars)], axis=1)
            u = (strata + rng.random((n, self.n_vars))) / max(n, 1)
            out = np.minimum((u * card).astype(np.int64), card - 1)
        else:
            raise ConfigError(f"Unknown sampling method '{method}'; expected 'uniform' or 'lhs'.")
        for i, value in (fixed or {}).items():
            out[:, i] = value
        return out

    def sample_like(self, arch: Any, n: int, rng: np.random.Generator, method: str = "lhs") -> list[Arch]:
        """``n`` architectures from the hypercube of ``arch``: its :meth:`_hypercube` positions fixed."""
        return self.sample(n, rng, method, fixed=self._hypercube(self.validate(arch)))

    def sample(  # type: ignore[override]
        self,
        n: int,
        rng: np.random.Generator,
        method: str = "uniform",
        max_draws: int = 10_000_000,
        fixed: Mapping[int, int] | None = None,
    ) -> list[Arch]:
        """``n`` architectures drawn uniformly, or by Latin-hypercube sampling (``method="lhs"``).

        LHS splits each position's range into ``n`` equal strata and draws each stratum once, so every choice of
        every position appears ``n / cardinality`` times (±1) in the sample. In a constrained space (see
        :meth:`constraint`) draws that break the constraint are rejected and redrawn, at most ``max_draws`` in all;
        LHS then covers the feasible region by drawing larger hypercubes and keeping their feasible rows.
        ``fixed`` positions (:meth:`sample_like`) take the given values in every draw.

        Raises:
            ConfigError: when fewer than ``n`` of ``max_draws`` draws meet the constraint.
        """
        if self.constraint() is None:
            return [self._decode(v) for v in self._draw(n, rng, method, fixed)]
        kept: list[np.ndarray] = []
        drawn, accepted = 0, 0
        while accepted < n:
            if drawn >= max_draws:
                raise ConfigError(
                    f"Only {accepted} of {drawn} architectures drawn from {self.name} meet its constraint "
                    f"({self.constraint()}); {n} were asked for. Loosen the constraint or narrow the ranges."
                )
            rate = (accepted + 1) / (drawn + 1)
            batch = int(min(max_draws - drawn, max(64, 2 * (n - accepted) / rate)))
            vectors = self._draw(batch, rng, method, fixed)
            good = vectors[self._feasible(vectors)][: n - accepted]
            kept.append(good)
            drawn, accepted = drawn + batch, accepted + len(good)
        return [self._decode(v) for v in np.concatenate(kept)]

    def is_feasible(self, arch: Any) -> bool:
        """Whether ``arch`` meets the space's constraint (always true in an unconstrained space).

        :meth:`validate` checks form only; :meth:`sample`, :meth:`mutate` and :meth:`crossover` keep to the
        constraint.
        """
        return bool(self._feasible(self.encode(arch)[None])[0])

    def mutate(self, arch: Any, rng: np.random.Generator, prob: float | None = None) -> Arch:
        """Redraw each position with probability ``prob`` (default ``1 / n_vars``); at least one changes.

        In a constrained space, up to 100 mutants are drawn until one meets the constraint; ``arch`` comes back
        unchanged when none does.
        """
        v0 = self.encode(arch)
        card = np.asarray(self.cardinalities)
        prob = 1.0 / self.n_vars if prob is None else prob
        mutable = np.flatnonzero(card > 1)
        for _ in range(100):
            v = v0.copy()
            mask = rng.random(self.n_vars) < prob
            if not mask[mutable].any() and mutable.size:
                mask[rng.choice(mutable)] = True
            for i in np.flatnonzero(mask):
                if card[i] > 1:  # a new value, never the same one
                    v[i] = (v[i] + rng.integers(1, card[i])) % card[i]
            if self._feasible(v[None])[0]:
                return self._decode(v)
        return self._decode(v0)

    def crossover(self, a: Any, b: Any, rng: np.random.Generator) -> tuple[Arch, Arch]:
        """Uniform crossover: each position comes from either parent with probability 1/2.

        In a constrained space a child that breaks the constraint is redrawn (up to 100 times), else it is a copy
        of its parent.
        """
        va, vb = self.encode(a), self.encode(b)
        children: list[np.ndarray | None] = [None, None]
        for _ in range(100):
            swap = rng.random(self.n_vars) < 0.5
            for k, candidate in enumerate((np.where(swap, vb, va), np.where(swap, va, vb))):
                if children[k] is None and self._feasible(candidate[None])[0]:
                    children[k] = candidate
            if children[0] is not None and children[1] is not None:
                break
        ca = va if children[0] is None else children[0]
        cb = vb if children[1] is None else children[1]
        return self._decode(ca), self._decode(cb)

    def enumerate(self) -> Iterator[Arch]:
        """Every architecture of the space, in the order of their integer vectors."""
        for v in itertools.product(*(range(c) for c in self.cardinalities)):
            yield self._decode(np.asarray(v))

    def index(self, arch: Any) -> int:
        """Position of ``arch`` in :meth:`enumerate` (mixed-radix value of its vector)."""
        index = 0
        for value, card in zip(self.encode(arch), self.cardinalities):
            index = index * card + int(value)
        return index

    def from_index(self, index: int) -> Arch:
        """Architecture at position ``index`` of :meth:`enumerate`."""
        if not 0 <= index < self.size():
            raise ConfigError(f"{self.name} has {self.size()} architectures; index {index} is out of range.")
        digits = []
        for card in reversed(self.cardinalities):
            index, d = divmod(index, card)
            digits.append(d)
        return self._decode(np.asarray(digits[::-1]))

    def encoding_features(self, arch: Any) -> np.ndarray:
        """Fixed-length numeric description of ``arch`` for surrogate models (default: its integer encoding).

        Tree models split on these values directly; spaces override this with an encoding that tells
        equivalent architectures apart less often (NAS-Bench-201: op one-hot plus path encoding).
        """
        return self.encode(arch).astype(np.float64)


SEARCH_SPACES: Registry[SearchSpace] = Registry("search space")


def register_search_space(name: str):
    """Class decorator registering a search space under ``name`` for configs and the command line."""
    return SEARCH_SPACES.register(name)


def list_search_spaces() -> list[str]:
    """Registered search-space names."""
    return SEARCH_SPACES.names()


def create_search_space(name: str, **kwargs: Any) -> SearchSpace:
    """The registered search space ``name`` built with ``kwargs`` (``None`` values dropped)."""
    return SEARCH_SPACES.create(name, **kwargs)


class ArchNetwork(nn.Module):
    """One architecture of a search space as a backbone, e.g. a searched network retrained with ``hwnas fit``.

    Args:
        num_classes: number of output logits (linked from the DataModule by the CLI).
        input_shape: shape of one sample (linked from the DataModule by the CLI).
        space: the search space.
        arch: the architecture in the space's string format.
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], space: SearchSpace, arch: str) -> None:
        super().__init__()
        parsed = space.from_string(arch)
        self.arch = space.to_string(parsed)
        self.net = space.build(parsed, num_classes, tuple(input_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
