"""AnalogNAS constrained evolutionary search (thesis §5.3.3, Algorithm 6, problem 5.3).

    max_α  ACC_1d(α) / σ(α)   s.t.  ψ(α) < T_p  (parameters),  AVM(α) < T_AVM

1. The surrogate (:class:`~hwnas_pl.surrogates.AnalogSurrogate`) is trained beforehand. Its ``acc_1d`` (the
   ranker's score mapped to accuracy points) and ``sigma_1d`` give the fitness ``acc_1d / max(σ, σ_floor)``;
   ``fitness: rank`` uses the ranker's score alone.
2. The population is drawn by Latin-hypercube sampling under T_p (the space's constraint); every architecture
   whose predicted AVM is not below T_AVM is replaced by a draw from the same hypercube (thesis: "sampled from
   the same hypercube dimension as the previous one"; on the macro space, the same number of main blocks M).
3. Each iteration keeps the better half by fitness, adds one mutant of each (the space's mutation: depth/width/
   other with the thesis's probabilities on the macro space, and its T100/T200 rule), and replaces every
   architecture that breaks T_AVM, and every duplicate, with a draw from its hypercube that meets both
   constraints. The loop stops after ``iterations`` or once the evolution has run ``time_budget`` seconds.
4. Every ``check_every`` iterations, ``check_size`` random members are evaluated for real (the search runner's
   evaluator: the NAS-Bench-201 table, or training with :class:`~hwnas_pl.modules.AnalogModule`); when the
   surrogate's Kendall tau on them is below ``tau_threshold`` it is fine-tuned on everything measured so far.
5. The surrogate's top-1 is evaluated for real and returned with the population (``summary.json``). With
   ``final_candidates: k > 1`` the surrogate's top-k are evaluated and the best measured one that meets T_AVM is
   returned (an extension: ranking errors among near-equal networks cost little when k networks are trained).

T_AVM comes through the search's constraint channel, ``constraints: {avm: {"<": 5.0}}`` (``max_avm`` is the older
spelling of the same budget). Every constraint on a metric the surrogate predicts (``avm``, ``sigma_1d``,
``acc_1d_score``) is applied to its predictions; the final pick must meet every constraint by its measured values.

[AMBIG] choices: Algorithm 6 prints "until AVM > T_AVM", read as the constraint AVM < T_AVM of Eq. 5.3. ACC/σ is
unbounded as σ → 0, and collapsed networks (chance accuracy, every trial alike) have σ = 0: on the NAS-Bench-201
analog table the true ACC/σ's best cell is such a network (10 %), so σ is floored at ``sigma_floor``, by default
the 5th percentile of σ in the surrogate's training data (0.33 points there, below which the true ACC/σ's best
is the table's most accurate cell). With ``fitness: acc_over_sigma`` the final candidates are compared by their
measured ACC/σ as well. The runner's ``max_evaluations`` bounds the true evaluations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError
from hwnas_pl.pareto import kendall_tau
from hwnas_pl.search.constraints import Constraint
from hwnas_pl.search.strategies import SearchStrategy
from hwnas_pl.spaces.base import SearchSpace
from hwnas_pl.surrogates.analog import TARGETS, AnalogSurrogate

SurrogateFactory = Callable[[SearchSpace], AnalogSurrogate]
DEFAULT_MAX_AVM = 10.0  # the thesis's T_AVM by default
FITNESSES = ("acc_over_sigma", "rank")
#: the surrogate's outputs, in the columns of :meth:`AnalogNASEvolution.predict`
PREDICTED = ("acc_1d_score", "acc_1d", "avm", "sigma_1d")


def tau_standard_error(n: int) -> float:
    """Standard error of Kendall's tau on ``n`` pairs of uncorrelated values: ``sqrt(2(2n+5) / (9n(n−1)))``."""
    return float(np.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))) if n > 1 else float("nan")


class AnalogNASEvolution(SearchStrategy):
    """Algorithm 6 as an ask/tell strategy: surrogate-driven evolution, true evaluations only to check the surrogate.

    Args:
        space: the search space (its constraint, e.g. :class:`~hwnas_pl.spaces.AnalogNASSpace`'s ``max_params``,
            is T_p).
        surrogate: a trained surrogate, or a factory called with ``space`` (YAML: class_path + init_args).
        population_size: architectures in the population (thesis: 200).
        iterations: evolution iterations (thesis: 200).
        max_avm: T_AVM, in accuracy points, when the search has no ``avm`` constraint (thesis: 10 by default, 5 in
            its main results); prefer ``constraints: {avm: {"<": T_AVM}}`` in the search config.
        check_every: iterations between surrogate checks (thesis: 100).
        check_size: population members evaluated for real at each check (``None``: 50, or the population when
            smaller). Each check records Kendall tau with its standard error under no correlation,
            ``sqrt(2(2n+5) / (9n(n−1)))``: 0.16 at n = 20, 0.10 at n = 50, so a tau read against the 0.9 threshold
            on 20 members is mostly noise.
        tau_threshold: fine-tune the surrogate when its Kendall tau on the checked members is below this (0.9).
        sampling: ``"lhs"`` (thesis) or ``"uniform"``.
        max_redraws: rounds of redrawing before giving up on finding architectures that meet T_AVM.
        final_candidates: the surrogate's top-k evaluated at the end; the best measured is returned (1: Algorithm 6).
        fitness: ``"acc_over_sigma"`` (Eq. 5.3: predicted ACC_1d / σ) or ``"rank"`` (the ranker's score alone).
        sigma_floor: σ below this counts as this in ACC/σ, in accuracy points (``None``: the 5th percentile of σ in
            the surrogate's training data).
        time_budget: seconds of evolution after which the search goes to its last check and final pick (``None``:
            ``iterations`` alone; a time budget makes the number of iterations, so the run, machine-dependent).
    """

    handles_constraints = True

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle; a version-1 pickle had T_AVM only as ``max_avm`` and ranked by score alone."""
        for key, value in (("fitness", "rank"), ("sigma_floor", None), ("time_budget", None), ("elapsed", 0.0)):
            state.setdefault(key, value)
        state["predictions"] = {}  # a cache; older ones held 3 columns
        state.setdefault("max_avm_arg", state.get("max_avm"))
        state.setdefault(
            "predicted_constraints", [Constraint("avm", "<", float(state.get("max_avm", DEFAULT_MAX_AVM)))]
        )
        super().__setstate__(state)

    def __init__(
        self,
        space: SearchSpace,
        surrogate: SurrogateFactory | AnalogSurrogate,
        population_size: int = 200,
        iterations: int = 200,
        max_avm: float | None = None,
        check_every: int = 100,
        check_size: int | None = None,
        tau_threshold: float = 0.9,
        sampling: str = "lhs",
        max_redraws: int = 50,
        final_candidates: int = 1,
        fitness: str = "acc_over_sigma",
        sigma_floor: float | None = None,
        time_budget: float | None = None,
    ) -> None:
        check_size = min(50, population_size) if check_size is None else check_size
        super().__init__(space, batch_size=check_size)
        if fitness not in FITNESSES:
            raise ConfigError(f"Unknown AnalogNAS fitness '{fitness}'; expected one of: {', '.join(FITNESSES)}.")
        if sigma_floor is not None and not sigma_floor > 0:
            raise ConfigError(f"AnalogNASEvolution sigma_floor must be positive or null, got {sigma_floor}.")
        if time_budget is not None and not time_budget > 0:
            raise ConfigError(f"AnalogNASEvolution time_budget must be positive seconds or null, got {time_budget}.")
        if population_size < 2 or iterations < 0 or check_every < 1 or check_size < 2:
            raise ConfigError(
                "AnalogNASEvolution needs population_size >= 2, iterations >= 0, check_every >= 1 and check_size >= 2; "
                f"got {population_size}, {iterations}, {check_every} and {check_size}."
            )
        if not 1 <= final_candidates <= population_size:
            raise ConfigError(
                f"final_candidates must lie in 1..population_size ({population_size}), got {final_candidates}."
            )
        if check_size > population_size:
            raise ConfigError(f"check_size ({check_size}) cannot exceed population_size ({population_size}).")
        self.surrogate = surrogate if isinstance(surrogate, AnalogSurrogate) else surrogate(space)
        if self.surrogate.space.name != space.name:
            raise ConfigError(
                f"The surrogate was built for the '{self.surrogate.space.name}' space; "
                f"the search is over '{space.name}'."
            )
        self.population_size, self.iterations, self.max_avm_arg = population_size, iterations, max_avm
        self.max_avm = DEFAULT_MAX_AVM if max_avm is None else float(max_avm)
        #: constraints on metrics the surrogate predicts (T_AVM among them), applied to its predictions
        self.predicted_constraints: list[Constraint] = [Constraint("avm", "<", self.max_avm)]
        self.check_every, self.check_size, self.tau_threshold = check_every, check_size, tau_threshold
        self.sampling, self.max_redraws, self.final_candidates = sampling, max_redraws, final_candidates
        self.fitness, self.sigma_floor, self.time_budget = fitness, sigma_floor, time_budget
        self.elapsed = 0.0  # seconds of evolution so far (kept across resumes)
        # state (pickled whole by the runner)
        self.rng = np.random.default_rng(0)
        self.population: list[Any] = []
        self.iteration = 0
        self.phase = "search"  # search -> final -> done
        self.predictions: dict[Any, tuple[float, ...]] = {}
        self.measured: dict[Any, dict[str, float]] = {}
        self.checks: list[dict[str, Any]] = []
        self.top1: Any = None
        self.candidates: list[Any] = []

    # ------------------------------------------------------------------ surrogate
    def _predicted_ok(self, archs: list[Any]) -> np.ndarray:
        """Mask of ``archs`` whose predictions meet every constraint on a predicted metric (T_AVM)."""
        columns = dict(zip(PREDICTED, self.predict(archs).T))
        ok = np.ones(len(archs), dtype=bool)
        for c in self.predicted_constraints:
            ok &= c.feasible(columns[c.metric])
        return ok

    def predict(self, archs: list[Any]) -> np.ndarray:
        """``(len(archs), 4)`` predictions in :data:`PREDICTED`'s order, cached until the surrogate changes."""
        new = [a for a in dict.fromkeys(archs) if a not in self.predictions]
        if new:
            out = self.surrogate.evaluate(new)
            for k, a in enumerate(new):
                self.predictions[a] = tuple(float(out[name][k]) for name in PREDICTED)
        return np.array([self.predictions[a] for a in archs], dtype=float).reshape(len(archs), len(PREDICTED))

    def floor(self) -> float:
        """σ_floor of ACC/σ: ``sigma_floor``, or the 5th percentile of the surrogate's training σ (at least 1e-3)."""
        if self.sigma_floor is not None:
            return float(self.sigma_floor)
        sigma = np.asarray(self.surrogate.train_targets.get("sigma_1d", []), dtype=float)
        return max(float(np.percentile(sigma, 5)), 1e-3) if sigma.size else 1e-3

    def score_of(self, acc: np.ndarray, sigma: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray:
        """The fitness of accuracies and σ (Eq. 5.3, σ floored), or ``rank`` under ``fitness: rank``."""
        if self.fitness == "rank":
            return np.asarray(acc if rank is None else rank, dtype=float)
        return np.asarray(acc, dtype=float) / np.maximum(np.asarray(sigma, dtype=float), self.floor())

    def fitness_of(self, archs: list[Any]) -> np.ndarray:
        """Predicted fitness of ``archs`` (larger is better)."""
        pred = self.predict(archs)
        return self.score_of(pred[:, 1], pred[:, 3], rank=pred[:, 0])

    def _fresh(self, n: int, exclude: set[Any], like: list[Any] | None = None) -> list[Any]:
        """``n`` new architectures under T_p whose predictions meet every predicted-metric constraint (T_AVM).

        The ``k``-th comes from the hypercube of ``like[k]`` (the architecture it replaces) when given; slots whose
        hypercube yields none in ``max_redraws`` rounds, and all slots without ``like``, draw from the whole space.
        """
        picks: dict[int, Any] = {}  # slot of like -> its replacement
        pending = list(range(len(like or [])))
        for _ in range(self.max_redraws):  # every pending slot draws 8 per round, predicted in one call
            if not pending:
                break
            draws = {k: self.space.sample_like(like[k], 8, self.rng, self.sampling) for k in pending}
            flat = list(dict.fromkeys(a for d in draws.values() for a in d if a not in exclude))
            ok = dict(zip(flat, self._predicted_ok(flat)))
            taken = set(picks.values())
            for k in pending:
                pick = next((a for a in draws[k] if ok.get(a, False) and a not in taken), None)
                if pick is not None:
                    picks[k] = pick
                    taken.add(pick)
            pending = [k for k in pending if k not in picks]
        found = [picks[k] for k in sorted(picks)]
        for _ in range(self.max_redraws):
            if len(found) >= n:
                return found[:n]
            draws = [a for a in dict.fromkeys(self.space.sample(max(2 * (n - len(found)), 16), self.rng, self.sampling))
                     if a not in exclude and a not in found]  # fmt: skip
            if draws:
                ok = self._predicted_ok(draws)
                found += [a for a, keep in zip(draws, ok) if keep][: n - len(found)]
            if len(found) >= n:
                return found
        others = [str(c) for c in self.predicted_constraints if c.metric != "avm"]
        meeting = f"a predicted AVM below max_avm={self.max_avm}" + (f" and {', '.join(others)}" if others else "")
        raise ConfigError(
            f"After {self.max_redraws} rounds of draws only {len(found)} of {n} new architectures of "
            f"'{self.space.name}' have {meeting}; raise max_avm (constraints: {{avm: {{'<': ...}}}}) or loosen "
            "the others."
        )

    # ------------------------------------------------------------------ Algorithm 6
    def _setup(self, n_obj: int, seed: int) -> None:
        names = list(self.objectives or {})
        missing = [t for t in TARGETS if t not in names]
        if missing:
            raise ConfigError(
                f"AnalogNASEvolution checks its surrogate against measured {', '.join(TARGETS)}; the search's "
                f"objectives {names} lack '{missing[0]}' (use an evaluator such as nasbench201_analog)."
            )
        self._resolve_constraints()
        self.rng = np.random.default_rng(seed)
        drawn = self.space.sample(self.population_size, self.rng, self.sampling)
        self.population = self._refill(list(dict.fromkeys(drawn)))

    def _resolve_constraints(self) -> None:
        """T_AVM from the search's ``avm`` constraint (or ``max_avm``); the search's predicted-metric constraints."""
        mine = [c for c in self.constraints if c.metric in self.surrogate.directions]
        avm = [c for c in mine if c.metric == "avm"]
        if avm and self.max_avm_arg is not None and any(c.bound != float(self.max_avm_arg) for c in avm):
            raise ConfigError(
                f"AnalogNASEvolution max_avm={self.max_avm_arg} disagrees with the search's constraint "
                f"{avm[0]}; give T_AVM once (constraints: {{avm: {{'<': ...}}}})."
            )
        if avm:
            upper = [c.bound for c in avm if c.op in ("<", "<=")]
            self.max_avm = min(upper) if upper else self.max_avm
            self.predicted_constraints = mine
        else:
            self.predicted_constraints = [Constraint("avm", "<", self.max_avm), *mine]

    def step(self) -> None:
        """One iteration: top half by fitness, one mutant each, violators and duplicates redrawn from their cube."""
        fitness = self.fitness_of(self.population)
        parents = [self.population[i] for i in np.argsort(-fitness, kind="stable")[: self.population_size // 2]]
        children = [self.space.mutate(a, self.rng) for a in parents]
        self.population = self._refill(parents + children)
        self.iteration += 1

    def _refill(self, candidates: list[Any]) -> list[Any]:
        """A full population: ``candidates`` meeting every predicted constraint (once each, in order), then draws.

        Each violator or duplicate is replaced by a draw from its own hypercube (:meth:`_fresh`).
        """
        pool: list[Any] = []
        seen: set[Any] = set()
        replaced: list[Any] = []
        for a, ok in zip(candidates, self._predicted_ok(candidates)):
            if ok and a not in seen:
                pool.append(a)
                seen.add(a)
            else:
                replaced.append(a)
        pool = pool[: self.population_size]
        missing = self.population_size - len(pool)
        return pool + self._fresh(missing, set(pool), like=replaced[:missing])

    def ranked(self) -> list[Any]:
        """The population, best first by fitness."""
        order = np.argsort(-self.fitness_of(self.population), kind="stable")
        return [self.population[i] for i in order]

    def _out_of_time(self) -> bool:
        return self.time_budget is not None and self.elapsed >= self.time_budget

    def _ask(self) -> list[Any]:
        if self.phase == "done":
            return []
        if self.phase == "final":
            return self.ranked()[: self.final_candidates]
        for _ in range(min(self.check_every, self.iterations - self.iteration)):
            if self._out_of_time():
                break
            start = time.perf_counter()
            self.step()
            self.elapsed += time.perf_counter() - start
        pick = self.rng.choice(len(self.population), size=self.check_size, replace=False)
        return [self.population[i] for i in np.sort(pick)]

    def _tell(self, archs: list[Any], F: np.ndarray, G: np.ndarray | None) -> None:
        names = list(self.objectives or {})
        values = {t: F[:, names.index(t)] * (-1.0 if self.objectives[t] == "max" else 1.0) for t in TARGETS}
        for k, a in enumerate(archs):
            self.measured[a] = {t: float(values[t][k]) for t in TARGETS}
        if self.phase == "final":  # the best measured candidate within every budget, else the surrogate's top-1
            feasible = np.ones(len(archs), dtype=bool) if G is None else (G <= 0).all(axis=1)
            avm = [c for c in self.predicted_constraints if c.metric == "avm"]
            for c in avm:  # T_AVM on the measured AVM (also when it came as max_avm, not through G)
                feasible &= c.feasible(values["avm"])
            ok = [a for a, keep in zip(archs, feasible) if keep]
            measured = self.score_of(values["acc_1d"], values["sigma_1d"])
            best = {a: measured[k] for k, a in enumerate(archs)}
            self.top1 = max(ok, key=best.__getitem__) if ok else archs[0]
            self.candidates = list(archs)
            self.phase = "done"
            return
        tau = kendall_tau(self.predict(archs)[:, 0], values["acc_1d"])
        tau = 0.0 if np.isnan(tau) else tau
        tuned = tau < self.tau_threshold
        if tuned:
            measured = list(self.measured)
            self.surrogate.fine_tune(measured, {t: [self.measured[a][t] for a in measured] for t in TARGETS})
            self.predictions.clear()
            # fine-tuning may move the population past T_AVM: redraw the members that now break it
            self.population = self._refill(self.population)
        n = len(archs)
        self.checks.append(
            {"iteration": self.iteration, "kendall_tau": tau, "tau_standard_error": tau_standard_error(n),
             "checked": n, "fine_tuned": tuned}
        )  # fmt: skip
        if self.iteration >= self.iterations or self._out_of_time():
            self.phase = "final"

    # ------------------------------------------------------------------ checkpoint
    def _state_dict(self) -> dict[str, Any]:
        """The evolution's state; the surrogate only once fine-tuned (otherwise the config rebuilds it as it was)."""
        state = {k: v for k, v in super()._state_dict().items() if k not in ("surrogate", "predictions")}
        state["rng"] = self.rng.bit_generator.state
        state["surrogate"] = self.surrogate.state_dict() if any(c["fine_tuned"] for c in self.checks) else None
        return state

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        surrogate, rng = state.pop("surrogate", None), state.pop("rng")
        self.__dict__.update(state)
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = rng
        if surrogate is not None:
            self.surrogate.load_state_dict(surrogate)
        self.predictions = {}

    # ------------------------------------------------------------------ result
    def summary(self) -> dict[str, Any]:
        """Top-1 (predicted and, once evaluated, measured), the population ranked by the surrogate, the checks."""
        if not self.population:
            return {"iterations": self.iteration}
        pred, fitness = self.predict(self.population), self.fitness_of(self.population)
        order = np.argsort(-fitness, kind="stable")
        top1 = self.top1 if self.top1 is not None else self.population[int(order[0])]  # before the end: top-1
        top_pred = self.predict([top1])[0]
        return {
            "top1": {
                "arch": self.space.to_string(top1),
                "predicted": {**dict(zip(PREDICTED, top_pred)), "fitness": float(self.fitness_of([top1])[0])},
                "measured": self.measured.get(top1),
                "candidates": [{"arch": self.space.to_string(a), **self.measured[a]} for a in self.candidates],
            },
            "iterations": self.iteration,
            "fitness": self.fitness,
            "sigma_floor": self.floor() if self.fitness == "acc_over_sigma" else None,
            "evolution_seconds": round(self.elapsed, 3),
            "stopped_by": "time_budget" if self._out_of_time() and self.iteration < self.iterations else "iterations",
            "true_evaluations": len(self.measured),
            "max_avm": self.max_avm,
            "constraints": [str(c) for c in self.predicted_constraints],
            "constraint": self.space.constraint(),
            "checks": self.checks,
            "population": [
                {
                    "arch": self.space.to_string(self.population[i]),
                    **dict(zip(PREDICTED, pred[i])),
                    "fitness": fitness[i],
                }
                for i in order
            ],  # fmt: skip
        }
