r"""A single-objective genetic algorithm with a linear hardware penalty (HW-EvRSNAS Algorithm 1, Eq. 4–5).

Each generation the population (``population_size``, paper N_pop = 20) is evaluated; its fitness is

.. math:: \mathrm{fitness}(\alpha) = \varphi(\alpha) + \psi(\alpha), \qquad
          \psi(\alpha) = \begin{cases} 0 & \Psi(\alpha) \le \Omega \\ \Omega - \Psi(\alpha) & \text{otherwise}
          \end{cases}

with :math:`\varphi` the search's one objective (the RMI proxy, or any metric, maximised) and :math:`\Psi \le
\Omega` the search's constraints: the base strategy adds ``penalty_weight`` × the violation in the constraint's
own units to the minimised objective (:func:`~hwnas_pl.search.constraints.as_penalty`; weight 1 is the paper's
"no extra hyperparameter"). The next generation keeps the ``elitism`` best and fills the rest with children:
parents by tournament (``tournament_size``), the space's uniform crossover (probability ``crossover_prob``), then
the space's mutation, each gene redrawn with probability ``mutation_rate`` (EvNAS's operators on the space's own
integer encoding: EvNAS redraws a real-valued gene whose argmax picks the op, the same uniform redraw). After
``generations`` generations the best of the last one is the pick (Algorithm 1 returns :math:`\alpha^{(N_{gen})}`):
the fittest member within every budget, since a soft penalty can leave a slightly-over-budget member fittest (the
fittest of all, marked ``within_budget: false``, when none is within).

``constraint_handling: rejection`` is the baseline of the paper's Fig. 5: every member (initial and child) is drawn
until it meets the constraints, checked with the ``feasibility`` cost model (a cheap one: analytic counts, a LUT);
the summary counts the draws (``samples_drawn``, ``initial_samples``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.base import CostModel, CostModelFactory
from hwnas_pl.search.constraints import feasible_rows
from hwnas_pl.search.strategies import SearchStrategy
from hwnas_pl.spaces.base import EncodedSpace, SearchSpace

HANDLING = ("penalty", "rejection")


class GeneticSearch(SearchStrategy):
    """HW-EvRSNAS's GA (Algorithm 1): tournament selection, uniform crossover, per-gene mutation, elitism.

    Args:
        space: an encoded search space (its crossover and mutation are used).
        population_size: N_pop (paper: 20; its Fig. 5 uses 50).
        generations: N_gen, generations of children after the initial population (paper: 100).
        tournament_size: members drawn per parent; the fittest is the parent.
        crossover_prob: probability that two parents recombine (else the children copy them before mutation).
        mutation_rate: per-gene redraw probability (EvNAS: 0.1).
        elitism: best members carried over unchanged.
        constraint_handling: ``"penalty"`` (Eq. 5) or ``"rejection"`` (Fig. 5's baseline).
        penalty_weight: weight of the violation (1 = the paper, in the constraint's units).
        feasibility: the cost model (or factory called with the space) rejection sampling checks draws with.
        max_samples: draws rejection sampling may make in all before giving up.
    """

    def __init__(
        self,
        space: SearchSpace,
        population_size: int = 20,
        generations: int = 100,
        tournament_size: int = 5,
        crossover_prob: float = 1.0,
        mutation_rate: float = 0.1,
        elitism: int = 1,
        constraint_handling: str = "penalty",
        penalty_weight: float = 1.0,
        feasibility: CostModel | CostModelFactory | None = None,
        max_samples: int = 1_000_000,
    ) -> None:
        super().__init__(space, batch_size=population_size, penalty_weight=penalty_weight)
        if not isinstance(space, EncodedSpace):
            raise ConfigError(f"GeneticSearch needs an encoded space (fixed-length genes); {space.name} is not one.")
        if population_size < 2 or generations < 0 or not 1 <= tournament_size <= population_size:
            raise ConfigError(
                "GeneticSearch needs population_size >= 2, generations >= 0 and 1 <= tournament_size <= "
                f"population_size; got {population_size}, {generations} and {tournament_size}."
            )
        if not 0 <= elitism < population_size or not 0 <= crossover_prob <= 1 or not 0 <= mutation_rate <= 1:
            raise ConfigError(
                "GeneticSearch needs 0 <= elitism < population_size and crossover_prob, mutation_rate in [0, 1]; got "
                f"{elitism}, {crossover_prob} and {mutation_rate}."
            )
        if constraint_handling not in HANDLING:
            raise ConfigError(
                f"GeneticSearch constraint_handling must be one of {', '.join(HANDLING)}, got '{constraint_handling}'."
            )
        if constraint_handling == "rejection" and feasibility is None:
            raise ConfigError("GeneticSearch constraint_handling 'rejection' needs a feasibility cost model to check "
                              "draws against the constraints (e.g. the analytic counts or a LUT).")  # fmt: skip
        self.population_size, self.generations = population_size, generations
        self.tournament_size, self.crossover_prob, self.mutation_rate = tournament_size, crossover_prob, mutation_rate
        self.elitism, self.constraint_handling, self.max_samples = elitism, constraint_handling, max_samples
        self.feasibility = (
            feasibility if feasibility is None or isinstance(feasibility, CostModel) else feasibility(space)
        )
        self.rng = np.random.default_rng(0)
        self.population: list[Any] = []
        self.fitness = np.zeros(0)
        self.within_budget = np.zeros(0, dtype=bool)  # per member, from the constraint values G
        self._told_within = np.zeros(0, dtype=bool)
        self.generation = 0  # 0: the initial population is next
        self.samples_drawn = 0
        self.initial_samples: int | None = None
        self.best: list[dict[str, Any]] = []  # per generation: the best member and its fitness
        self._pending: list[Any] = []

    @property
    def handles_constraints(self) -> bool:  # type: ignore[override]
        return self.constraint_handling == "rejection"

    def _setup(self, n_obj: int, seed: int) -> None:
        if n_obj != 1:
            raise ConfigError(
                f"GeneticSearch maximises one fitness; the search has {n_obj} objectives. Give one objective "
                "(e.g. objectives: {rmi: max}) and the budgets as constraints."
            )
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ rejection sampling
    def _within_budget(self, archs: list[Any]) -> np.ndarray:
        values = self.feasibility.evaluate(archs)  # type: ignore[union-attr]
        missing = [c.metric for c in self.constraints if c.metric not in values]
        if missing:
            raise ConfigError(f"The feasibility cost model does not compute '{missing[0]}', which a constraint "
                              f"budgets; it computes: {', '.join(values)}.")  # fmt: skip
        rows = [{m: float(v[i]) for m, v in values.items()} for i in range(len(archs))]
        return feasible_rows(rows, self.constraints)

    def _draw_feasible(self, n: int, make) -> list[Any]:
        """``n`` members from ``make(k)`` (k candidates per call), keeping only those within every budget."""
        if self.constraint_handling != "rejection" or not self.constraints:
            out = make(n)
            self.samples_drawn += len(out)
            return out
        kept: list[Any] = []
        while len(kept) < n:
            if self.samples_drawn >= self.max_samples:
                raise ConfigError(
                    f"Rejection sampling drew {self.samples_drawn} architectures and found only {len(kept)} of {n} "
                    f"within {', '.join(map(str, self.constraints))}; loosen the budget or use "
                    "constraint_handling: penalty."
                )
            batch = make(max(n - len(kept), 16))
            for arch, ok in zip(batch, self._within_budget(batch)):
                if len(kept) == n:
                    break  # draws past the last member needed are not counted: as if drawn one at a time
                self.samples_drawn += 1
                if ok:
                    kept.append(arch)
        return kept

    # ------------------------------------------------------------------ the GA
    def _tournament(self) -> Any:
        idx = self.rng.choice(len(self.population), size=self.tournament_size, replace=False)
        return self.population[int(idx[np.argmax(self.fitness[idx])])]

    def _children(self, n: int) -> list[Any]:
        out: list[Any] = []
        while len(out) < n:
            a, b = self._tournament(), self._tournament()
            pair = self.space.crossover(a, b, self.rng) if self.rng.random() < self.crossover_prob else (a, b)
            out += [self.space.mutate(c, self.rng, self.mutation_rate) for c in pair]
        return out[:n]

    def _ask(self) -> list[Any]:
        if self.generation > self.generations:
            return []
        if self.generation == 0:
            self._pending = self._draw_feasible(self.population_size, lambda k: self.space.sample(k, self.rng))
            self.initial_samples = self.samples_drawn
            return list(self._pending)
        self._pending = self._draw_feasible(self.population_size - self.elitism, self._children)
        return list(self._pending)

    def tell(self, archs: list[Any], F: np.ndarray, G: np.ndarray | None = None) -> None:
        """As the base class; also notes which members are within every budget (``G <= 0``) for the pick."""
        within = np.ones(len(archs), dtype=bool)
        if G is not None and np.size(G):
            within = (np.asarray(G, dtype=float).reshape(len(archs), -1) <= 0).all(axis=1)
        self._told_within = within
        super().tell(archs, F, G)

    def _tell(self, archs: list[Any], F: np.ndarray, G: np.ndarray | None) -> None:
        fitness = -np.asarray(F, dtype=float)[:, 0]  # F is minimised: -phi (+ the penalty)
        if self.generation == 0:
            self.population, self.fitness, self.within_budget = list(archs), fitness, self._told_within
        else:
            elite = np.argsort(-self.fitness, kind="stable")[: self.elitism]
            self.population = [self.population[i] for i in elite] + list(archs)
            self.fitness = np.concatenate([self.fitness[elite], fitness])
            self.within_budget = np.concatenate([self.within_budget[elite], self._told_within])
        best = int(np.argmax(self.fitness))
        self.best.append({"generation": self.generation, "arch": self.space.to_string(self.population[best]),
                          "fitness": float(self.fitness[best])})  # fmt: skip
        self.generation += 1
        self._pending = []

    def summary(self) -> dict[str, Any]:
        """The pick (the best of the last generation), the best per generation and the draws made."""
        out: dict[str, Any] = {
            "generations": max(self.generation - 1, 0),
            "constraint_handling": self.constraint_handling,
            "samples_drawn": self.samples_drawn,
            "initial_samples": self.initial_samples,
        }
        if self.population:
            known = len(self.within_budget) == len(self.population)  # not in states saved before it was kept
            within = self.within_budget if known and self.within_budget.any() else np.ones(len(self.fitness), bool)
            best = int(np.argmax(np.where(within, self.fitness, -np.inf)))
            out["pick"] = {"arch": self.space.to_string(self.population[best]), "fitness": float(self.fitness[best])}
            if known:
                out["pick"]["within_budget"] = bool(self.within_budget[best])
            out["best_per_generation"] = self.best
        return out

    def _state_dict(self) -> dict[str, Any]:
        keep = ("population", "fitness", "within_budget", "generation", "samples_drawn", "initial_samples", "best",
                "_pending")  # fmt: skip
        return {"rng": self.rng.bit_generator.state, **{k: getattr(self, k) for k in keep}}

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        for key, value in state.items():
            if key != "rng":
                setattr(self, key, value)
