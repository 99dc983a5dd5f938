"""Population search strategies speaking ask/tell over a search space.

``ask()`` returns architectures to evaluate; ``tell(archs, F)`` gives their objectives as a minimisation array
(the runner converts directions). Subclasses implement ``_setup``, ``_ask`` and ``_tell`` (pymoo's template
method). Strategies are plain picklable objects: the runner checkpoints them whole, RNG included.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError
from hwnas_pl.spaces.base import SearchSpace


class SearchStrategy(ABC):
    """Base class of the search strategies.

    Args:
        space: the search space.
        batch_size: architectures per ``ask()`` (the population size for evolutionary strategies).
    """

    def __init__(self, space: SearchSpace, batch_size: int = 50) -> None:
        if batch_size < 1:
            raise ConfigError(f"{type(self).__name__} batch_size must be >= 1, got {batch_size}.")
        self.space = space
        self.batch_size = batch_size
        self.n_obj: int | None = None
        self.objectives: dict[str, str] | None = None

    def setup(self, n_obj: int, seed: int, objectives: Mapping[str, str] | None = None) -> None:
        """Prepare for ``n_obj`` minimised objectives with the random seed ``seed``.

        ``objectives`` names them (metric -> the user's direction, in the column order of ``tell``'s ``F``) for
        strategies that treat objectives differently.
        """
        self.n_obj = n_obj
        self.objectives = dict(objectives) if objectives is not None else None
        self._setup(n_obj, seed)

    def ask(self) -> list[Any]:
        """Architectures to evaluate next."""
        if self.n_obj is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before ask().")
        return self._ask()

    def tell(self, archs: list[Any], F: np.ndarray) -> None:
        """Objectives (minimised, shape ``(len(archs), n_obj)``) of the architectures from the last ``ask()``."""
        F = np.asarray(F, dtype=float)
        if F.shape != (len(archs), self.n_obj):
            raise ConfigError(f"tell() got objectives of shape {F.shape}; expected ({len(archs)}, {self.n_obj}).")
        self._tell(archs, F)

    def summary(self) -> dict[str, Any] | None:
        """What the strategy found beyond the evaluated front (written to ``summary.json``); default: nothing."""
        return None

    # ------------------------------------------------------------------ TO BE OVERWRITTEN
    @abstractmethod
    def _setup(self, n_obj: int, seed: int) -> None: ...

    @abstractmethod
    def _ask(self) -> list[Any]: ...

    @abstractmethod
    def _tell(self, archs: list[Any], F: np.ndarray) -> None: ...


class RandomSearch(SearchStrategy):
    """Uniform (or Latin-hypercube) random sampling without repeats: the baseline every search is compared with.

    Args:
        space: the search space.
        batch_size: architectures per ``ask()``.
        method: ``"uniform"`` or ``"lhs"``.
    """

    def __init__(self, space: SearchSpace, batch_size: int = 50, method: str = "uniform") -> None:
        super().__init__(space, batch_size)
        self.method = method
        self.rng = np.random.default_rng(0)
        self.seen: set[Any] = set()

    def _setup(self, n_obj: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def _ask(self) -> list[Any]:
        batch: list[Any] = []
        for _ in range(100):  # redraw repeats; give up only when the space is nearly exhausted
            for arch in self.space.sample(self.batch_size, self.rng, self.method):
                if arch not in self.seen and arch not in batch:
                    batch.append(arch)
            if len(batch) >= self.batch_size:
                break
        self.seen.update(batch)
        return batch[: self.batch_size]

    def _tell(self, archs: list[Any], F: np.ndarray) -> None:
        pass


class NSGA2Search(SearchStrategy):
    """NSGA-II (pymoo) on the space's integer encoding, with the space's own sampling, crossover and mutation.

    Selection is pymoo's binary tournament on Pareto rank and crowding distance; survival keeps the best
    ``batch_size`` by rank then crowding distance; duplicates are eliminated.

    Args:
        space: the search space.
        batch_size: population size (offspring per generation too).
        crossover_prob: probability that a mating recombines (uniform crossover), else the parents are copied.
        mutation_prob: per-position mutation probability (default ``1 / n_vars``).
        sampling: initial population, ``"lhs"`` or ``"uniform"``.
    """

    def __init__(
        self,
        space: SearchSpace,
        batch_size: int = 50,
        crossover_prob: float = 0.9,
        mutation_prob: float | None = None,
        sampling: str = "lhs",
    ) -> None:
        super().__init__(space, batch_size)
        self.crossover_prob, self.mutation_prob, self.sampling = crossover_prob, mutation_prob, sampling
        self.algorithm: Any = None
        self._pending: Any = None

    def _setup(self, n_obj: int, seed: int) -> None:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.problem import Problem

        from hwnas_pl.search.operators import SpaceCrossover, SpaceMutation, SpaceSampling

        card = np.asarray(self.space.cardinalities)
        problem = Problem(n_var=len(card), n_obj=n_obj, xl=np.zeros(len(card)), xu=card - 1, vtype=int)
        self.algorithm = NSGA2(
            pop_size=self.batch_size,
            sampling=SpaceSampling(self.space, self.sampling),
            crossover=SpaceCrossover(self.space, prob=self.crossover_prob),
            mutation=SpaceMutation(self.space, self.mutation_prob),
            eliminate_duplicates=True,
        )
        self.algorithm.setup(problem, seed=seed, verbose=False)

    def _ask(self) -> list[Any]:
        self._pending = self.algorithm.ask()
        return [self.space.decode(x) for x in self._pending.get("X")]

    def _tell(self, archs: list[Any], F: np.ndarray) -> None:
        asked = [self.space.decode(x) for x in self._pending.get("X")]
        if asked != list(archs):
            raise ConfigError("NSGA2Search.tell() must receive the architectures of the last ask(), in order.")
        self._pending.set("F", F)
        self.algorithm.tell(infills=self._pending)
        self._pending = None
