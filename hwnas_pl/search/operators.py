"""pymoo operators that delegate to a search space's ``sample``/``crossover``/``mutate`` (one encoding for all)."""

from __future__ import annotations

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.mutation import Mutation
from pymoo.core.sampling import Sampling

from hwnas_pl.spaces.base import SearchSpace


class SpaceSampling(Sampling):
    """Initial population from ``space.sample(n, rng, method)``."""

    def __init__(self, space: SearchSpace, method: str = "lhs") -> None:
        super().__init__()
        self.space, self.method = space, method

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        archs = self.space.sample(n_samples, random_state, self.method)
        return np.stack([self.space.encode(a) for a in archs])


class SpaceCrossover(Crossover):
    """Two parents, two children by ``space.crossover``."""

    def __init__(self, space: SearchSpace, prob: float = 0.9) -> None:
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)
        self.space = space

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        _, n_matings, n_var = X.shape
        out = np.empty((2, n_matings, n_var), dtype=np.int64)
        for k in range(n_matings):
            a, b = self.space.crossover(self.space.decode(X[0, k]), self.space.decode(X[1, k]), random_state)
            out[0, k], out[1, k] = self.space.encode(a), self.space.encode(b)
        return out


class SpaceMutation(Mutation):
    """Each offspring goes through ``space.mutate`` with per-position probability ``prob_var``."""

    def __init__(self, space: SearchSpace, prob_var: float | None = None) -> None:
        super().__init__(prob=1.0)
        self.space, self.prob_position = space, prob_var

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        return np.stack(
            [self.space.encode(self.space.mutate(self.space.decode(x), random_state, self.prob_position)) for x in X]
        )
