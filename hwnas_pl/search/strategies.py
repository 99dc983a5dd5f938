"""Population search strategies speaking ask/tell over a search space.

``ask()`` returns architectures to evaluate; ``tell(archs, F, G)`` gives their objectives as a minimisation array
(the search converts directions) and their constraint values (pymoo's convention, ``G <= 0`` feasible; see
:mod:`hwnas_pl.search.constraints`). Subclasses implement ``_setup``, ``_ask`` and ``_tell`` (pymoo's template
method). A strategy that does not handle constraints (:attr:`SearchStrategy.handles_constraints` false) receives
the objectives with the violation added as a penalty (:func:`~hwnas_pl.search.constraints.as_penalty`).
``state_dict()``/``load_state_dict()`` hold what a resumed search needs, RNG included.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError
from hwnas_pl.search.constraints import Constraint, as_penalty
from hwnas_pl.spaces.base import SearchSpace

#: attributes the base class keeps in :meth:`SearchStrategy.state_dict` for every strategy
_BASE_STATE = ("n_obj", "objectives", "constraints")


class SearchStrategy(ABC):
    """Base class of the search strategies.

    Args:
        space: the search space.
        batch_size: architectures per ``ask()`` (the population size for evolutionary strategies).
        penalty_weight: ``w`` of :func:`~hwnas_pl.search.constraints.as_penalty`, used when the strategy does not
            handle constraints itself.
    """

    #: whether ``_tell`` uses ``G``; otherwise ``tell`` folds it into ``F`` as a penalty
    handles_constraints: bool = False
    #: attributes added after version 1 of ``search_state.pkl`` (which pickled strategies whole), with the value an
    #: older pickle means; subclasses extend it
    _added_later: Mapping[str, Any] = {"constraints": (), "penalty_weight": 1.0}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, giving attributes that an older version did not have the value it behaved with."""
        for cls in reversed(type(self).__mro__):
            for key, value in getattr(cls, "_added_later", {}).items():
                state.setdefault(key, list(value) if isinstance(value, tuple) else value)
        self.__dict__.update(state)

    def __init__(self, space: SearchSpace, batch_size: int = 50, penalty_weight: float = 1.0) -> None:
        if batch_size < 1:
            raise ConfigError(f"{type(self).__name__} batch_size must be >= 1, got {batch_size}.")
        if penalty_weight < 0:
            raise ConfigError(f"{type(self).__name__} penalty_weight must be >= 0, got {penalty_weight}.")
        self.space = space
        self.batch_size = batch_size
        self.penalty_weight = penalty_weight
        self.n_obj: int | None = None
        self.objectives: dict[str, str] | None = None
        self.constraints: list[Constraint] = []

    def setup(
        self,
        n_obj: int,
        seed: int,
        objectives: Mapping[str, str] | None = None,
        constraints: list[Constraint] | None = None,
    ) -> None:
        """Prepare for ``n_obj`` minimised objectives with the random seed ``seed``.

        ``objectives`` names them (metric -> the user's direction, in the column order of ``tell``'s ``F``) and
        ``constraints`` lists the budgets in the column order of ``tell``'s ``G``, for strategies that treat them
        differently.
        """
        self.n_obj = n_obj
        self.objectives = dict(objectives) if objectives is not None else None
        self.constraints = list(constraints or [])
        self._setup(n_obj, seed)

    def ask(self) -> list[Any]:
        """Architectures to evaluate next."""
        if self.n_obj is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before ask().")
        return self._ask()

    def tell(self, archs: list[Any], F: np.ndarray, G: np.ndarray | None = None) -> None:
        """Results of the architectures from the last ``ask()``.

        ``F``: objectives, minimised, ``(len(archs), n_obj)``; ``G``: constraint values, ``(len(archs), n_constr)``,
        ``<= 0`` feasible.
        """
        F = np.asarray(F, dtype=float)
        if F.shape != (len(archs), self.n_obj):
            raise ConfigError(f"tell() got objectives of shape {F.shape}; expected ({len(archs)}, {self.n_obj}).")
        if G is not None:
            G = np.asarray(G, dtype=float).reshape(len(archs), -1)
            if G.shape[1] != len(self.constraints):
                raise ConfigError(
                    f"tell() got {G.shape[1]} constraint columns; the strategy was set up with "
                    f"{len(self.constraints)} ({', '.join(map(str, self.constraints)) or 'none'})."
                )
            if not G.shape[1]:
                G = None
        if G is not None and not self.handles_constraints:
            F, G = as_penalty(F, G, self.penalty_weight), None
        self._tell(archs, F, G)

    def summary(self) -> dict[str, Any] | None:
        """What the strategy found beyond the evaluated front (written to ``summary.json``); default: nothing."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What a resumed search needs to ask exactly what this strategy would ask next (RNG included)."""
        return {"base": {k: getattr(self, k) for k in _BASE_STATE}, "strategy": self._state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into a strategy built from the same config (``setup`` is not called again)."""
        for key, value in state.get("base", {}).items():
            setattr(self, key, value)
        self.constraints = list(self.constraints or [])
        self._load_state_dict(state.get("strategy", {}))

    def _state_dict(self) -> dict[str, Any]:
        """The strategy's own state; default: every attribute but the space and the configuration."""
        return {k: v for k, v in vars(self).items() if k not in ("space", *_BASE_STATE)}

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)

    # ------------------------------------------------------------------ TO BE OVERWRITTEN
    @abstractmethod
    def _setup(self, n_obj: int, seed: int) -> None: ...

    @abstractmethod
    def _ask(self) -> list[Any]: ...

    @abstractmethod
    def _tell(self, archs: list[Any], F: np.ndarray, G: np.ndarray | None) -> None: ...


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

    def _tell(self, archs: list[Any], F: np.ndarray, G: np.ndarray | None) -> None:
        pass

    def _state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "seen": list(self.seen)}

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.seen = set(state["seen"])


class NSGA2Search(SearchStrategy):
    """NSGA-II (pymoo) on the space's integer encoding, with the space's own sampling, crossover and mutation.

    Selection is pymoo's binary tournament on Pareto rank and crowding distance; survival keeps the best
    ``batch_size`` by rank then crowding distance; duplicates are eliminated. With constraints, pymoo's
    feasibility-first rules apply (``constraint_handling: native``): a feasible architecture beats an infeasible one,
    two infeasible ones compare by violation. ``constraint_handling: penalty`` adds the violation to the objectives
    instead (:func:`~hwnas_pl.search.constraints.as_penalty`, weight ``penalty_weight``).

    Args:
        space: the search space.
        batch_size: population size (offspring per generation too).
        crossover_prob: probability that a mating recombines (uniform crossover), else the parents are copied.
        mutation_prob: per-position mutation probability (default ``1 / n_vars``).
        sampling: initial population, ``"lhs"`` or ``"uniform"``.
        constraint_handling: ``"native"`` (pymoo's constrained NSGA-II) or ``"penalty"``.
        penalty_weight: weight of the penalty (``constraint_handling: penalty``).
        generations: offspring generations after the initial population, then the search stops (HW-PR-NAS: 250);
            default: until ``max_evaluations``. Set it when the budget exceeds what the search can reach (NSGA-II on
            a cheap surrogate over a small space keeps re-proposing evaluated architectures).
    """

    _added_later = {"constraint_handling": "native", "generations": None}

    def __init__(
        self,
        space: SearchSpace,
        batch_size: int = 50,
        crossover_prob: float = 0.9,
        mutation_prob: float | None = None,
        sampling: str = "lhs",
        constraint_handling: str = "native",
        penalty_weight: float = 1.0,
        generations: int | None = None,
    ) -> None:
        super().__init__(space, batch_size, penalty_weight)
        if generations is not None and generations < 0:
            raise ConfigError(f"NSGA2Search generations must be >= 0 (or unset), got {generations}.")
        self.generations = generations
        if constraint_handling not in ("native", "penalty"):
            raise ConfigError(
                f"NSGA2Search constraint_handling must be 'native' or 'penalty', got '{constraint_handling}'."
            )
        self.constraint_handling = constraint_handling
        self.crossover_prob, self.mutation_prob, self.sampling = crossover_prob, mutation_prob, sampling
        self.algorithm: Any = None
        self._pending: Any = None

    def _setup(self, n_obj: int, seed: int) -> None:
        from pymoo.algorithms.moo.nsga2 import NSGA2

        from hwnas_pl.spaces.base import EncodedSpace

        if not isinstance(self.space, EncodedSpace):
            raise ConfigError(
                f"NSGA2Search works on fixed-length integer vectors, but the {self.space.name} space is not an "
                "EncodedSpace; use a strategy that samples and mutates through the space (RandomSearch)."
            )
        from pymoo.core.problem import Problem

        from hwnas_pl.search.operators import SpaceCrossover, SpaceMutation, SpaceSampling

        card = np.asarray(self.space.cardinalities)
        n_constr = len(self.constraints) if self.handles_constraints else 0
        problem = Problem(
            n_var=len(card), n_obj=n_obj, n_ieq_constr=n_constr, xl=np.zeros(len(card)), xu=card - 1, vtype=int
        )
        self.algorithm = NSGA2(
            pop_size=self.batch_size,
            sampling=SpaceSampling(self.space, self.sampling),
            crossover=SpaceCrossover(self.space, prob=self.crossover_prob),
            mutation=SpaceMutation(self.space, self.mutation_prob),
            eliminate_duplicates=True,
        )
        self.algorithm.setup(problem, seed=seed, verbose=False)

    def _ask(self) -> list[Any]:
        told = (self.algorithm.n_gen or 1) - 1  # generations told so far (pymoo's n_gen starts at 1)
        if self.generations is not None and told > self.generations:
            return []
        self._pending = self.algorithm.ask()
        return [self.space.decode(x) for x in self._pending.get("X")]

    @property
    def handles_constraints(self) -> bool:  # type: ignore[override]
        return self.constraint_handling == "native"

    def _tell(self, archs: list[Any], F: np.ndarray, G: np.ndarray | None) -> None:
        asked = [self.space.decode(x) for x in self._pending.get("X")]
        if asked != list(archs):
            raise ConfigError("NSGA2Search.tell() must receive the architectures of the last ask(), in order.")
        self._pending.set("F", F)
        if G is not None:
            self._pending.set("G", G)
        self.algorithm.tell(infills=self._pending)
        self._pending = None

    def _state_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "pending": self._pending}  # pymoo's algorithm, its RNG included

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.algorithm, self._pending = state["algorithm"], state["pending"]
