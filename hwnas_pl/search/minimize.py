r"""Search as a library call: :func:`minimize` runs ask → evaluate → tell until the budget is spent; it writes no files.

.. code-block:: python

    result = minimize(NASBench201Space(), NSGA2Search(space), [NASBench201TableModel(space), LatencyLUT(space)],
                      objectives={"baseline_acc": "max", "latency_ms": "min"},
                      constraints={"latency_ms": {"<=": 4.0}}, max_evaluations=1000,
                      callbacks=[WandbSearchLogger(project="hwnas")])

Objectives and constraints name metrics of the evaluators (any :class:`~hwnas_pl.evaluators.base.CostModel`).
The strategy is told ``F`` (objectives as minimisation) and ``G`` (constraints, ``<= 0`` feasible); the front is
the non-dominated set of the *feasible* architectures evaluated. Outputs, checkpoints, W&B and plots are
:mod:`search callbacks <hwnas_pl.search.callbacks>`; :class:`~hwnas_pl.search.runner.SearchRunner` is this loop
plus resume and the output callbacks.

Under ``torchrun`` every rank runs the same strategy with the same seed; each generation's new architectures are
split across ranks, evaluated (each rank on its own GPU when there are GPUs), and gathered, so every rank tells the
strategy the same values.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.base import CostModel, CostModelFactory
from hwnas_pl.pareto import as_minimization, hypervolume, nadir_reference_point, non_dominated_fronts
from hwnas_pl.search.constraints import Constraint, constraint_matrix, feasible_rows, parse_constraints
from hwnas_pl.search.strategies import SearchStrategy
from hwnas_pl.spaces.base import SearchSpace

#: version of :meth:`Search.state_dict` (1: the strategy pickled whole, before search callbacks)
STATE_VERSION = 2

#: A strategy class given in YAML by class_path and init_args, without the space (passed in).
StrategyFactory = Callable[[SearchSpace], SearchStrategy]


@dataclass
class SearchResult:
    """What a finished search found.

    Attributes:
        front: the non-dominated feasible architectures, ``{arch, <objective>: value, ...}`` in evaluation order.
        n_evaluations: distinct architectures evaluated.
        hypervolume: of the front, at ``reference_point``.
        normalized_hypervolume: the front's hypervolume over the exact front's (``reference_front``), else ``None``.
        output_dir: where the output callbacks wrote (``None`` from :func:`minimize` alone).
        strategy: the strategy's own summary (e.g. AnalogNAS's top-1), if it has one.
    """

    front: list[dict[str, Any]]
    n_evaluations: int
    hypervolume: float
    normalized_hypervolume: float | None
    output_dir: Path | None = None
    strategy: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    generations: int = 0
    reference_point: list[float] = field(default_factory=list)
    n_feasible: int = 0
    seconds: float = 0.0
    true_front: np.ndarray | None = None  # objectives of the exact front (``reference_front``)
    front_index: np.ndarray | None = None  # rows of ``history`` on the front
    verified: list[dict[str, Any]] | None = None  # the pick and best front members measured by ``verify``

    def summary(self, search: Search) -> dict[str, Any]:
        """``summary.json``'s content."""
        out = {
            "space": search.space.name,
            "objectives": search.objectives,
            "n_evaluations": self.n_evaluations,
            "generations": self.generations,
            "front_size": len(self.front),
            "reference_point": self.reference_point,
            "hypervolume": self.hypervolume,
            "normalized_hypervolume": self.normalized_hypervolume,
            "seconds": self.seconds,
        }
        if search.constraints:
            out["constraints"] = [str(c) for c in search.constraints]
            out["n_feasible"] = self.n_feasible
        if self.strategy is not None:
            out["strategy"] = self.strategy
        if self.verified is not None:
            out["verified"] = self.verified
        return out


_OWN_PROCESS_GROUP = []  # set when _dist() created the process group (so release_process_group may end it)


def _dist() -> tuple[int, int]:
    """(rank, world size), initialising a gloo process group when launched by torchrun and not yet initialised."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
        _OWN_PROCESS_GROUP.append(True)
        cores = os.cpu_count() or 1
        if world > cores and dist.get_rank() == 0:
            import torch

            if not torch.cuda.is_available():
                warnings.warn(
                    f"{world} search processes on {cores} CPU cores compete for the cores; expected --nproc_per_node "
                    f"{cores} or fewer on this machine.",
                    stacklevel=2,
                )
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def release_process_group() -> None:
    """Wait for every rank and end the process group :func:`_dist` created (a clean exit under torchrun)."""
    import torch.distributed as dist

    if _OWN_PROCESS_GROUP and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        _OWN_PROCESS_GROUP.clear()


def rank_device(rank: int) -> str:
    """This process's device: ``cuda:<LOCAL_RANK mod GPUs>`` when the machine has GPUs, else ``cpu``."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    index = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return f"cuda:{index}"


class SearchCallback:
    """Hooks of a search (pymoo's ``Callback``; Lightning's ``Callback`` habits). Override what you need.

    ``search`` is the running :class:`Search`: its space, strategy, ``history`` (one row per evaluated
    architecture), ``generation``, ``rank`` and ``world_size``.
    """

    def on_search_start(self, search: Search) -> None:
        """Before the first ``ask()`` (also of a resumed search)."""

    def on_evaluated(self, search: Search, archs: list[Any]) -> None:
        """After ``archs`` (the generation's new architectures) were evaluated and added to the history."""

    def on_generation_end(self, search: Search) -> None:
        """After the strategy was told a whole generation."""

    def on_search_end(self, search: Search, result: SearchResult) -> None:
        """With the finished search's result."""

    def state_dict(self) -> dict[str, Any]:
        """What the callback needs after a resume (saved with the search's state); default: nothing."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class Search:
    """One population search over ``space``: its loop, its state and its callbacks (see :func:`minimize`)."""

    def __init__(
        self,
        space: SearchSpace,
        strategy: SearchStrategy | StrategyFactory,
        evaluators: Sequence[CostModel | CostModelFactory],
        objectives: Mapping[str, str] | None = None,
        constraints: Mapping[str, Mapping[str, float]] | Sequence[Constraint] | None = None,
        max_evaluations: int = 1000,
        seed: int = 0,
        callbacks: Sequence[SearchCallback] = (),
        reference_front: bool = False,
        max_enumerate: int = 20000,
        verify: CostModel | CostModelFactory | Sequence[CostModel | CostModelFactory] | None = None,
        verify_top: int = 1,
    ) -> None:
        self.space = space
        self.strategy = strategy if isinstance(strategy, SearchStrategy) else strategy(space)
        self.evaluators = [e if isinstance(e, CostModel) else e(space) for e in evaluators]
        if not self.evaluators:
            raise ConfigError("A search needs at least one evaluator (a cost model or benchmark table).")
        available = {m: d for e in self.evaluators for m, d in e.directions.items()}
        self.objectives = dict(objectives) if objectives else available
        unknown = [m for m in self.objectives if m not in available]
        if unknown:
            raise ConfigError(
                f"Objective '{unknown[0]}' is not computed by any evaluator; expected one of: {', '.join(available)}."
            )
        if len(self.objectives) < 1:
            raise ConfigError("A search needs at least one objective.")
        self.constraints = parse_constraints(constraints)
        unknown = [c.metric for c in self.constraints if c.metric not in available]
        if unknown:
            raise ConfigError(
                f"Constraint on '{unknown[0]}' names a metric no evaluator computes; expected one of: "
                f"{', '.join(available)}."
            )
        if max_evaluations < 1:
            raise ConfigError(f"max_evaluations must be >= 1, got {max_evaluations}.")
        self.max_evaluations = max_evaluations
        self.seed = seed
        self.callbacks = list(callbacks)
        self.reference_front = reference_front
        self.max_enumerate = max_enumerate
        verifiers = [] if verify is None else list(verify) if isinstance(verify, Sequence) else [verify]
        self.verify = [v if isinstance(v, CostModel) else v(space) for v in verifiers]
        if verify_top < 0:
            raise ConfigError(f"verify_top must be >= 0, got {verify_top}.")
        self.verify_top = verify_top
        self.rank, self.world_size = _dist()
        self.device = rank_device(self.rank)
        for evaluator in [*self.evaluators, *self.verify]:
            evaluator.place(self.device)
        # state
        self.history: list[dict[str, Any]] = []
        self.cache: dict[Any, dict[str, float]] = {}
        self.generation = 0
        self.seconds_before = 0.0  # wall time of the runs this one resumes
        self._start: float | None = None  # when run() began
        self.reference_point: np.ndarray | None = None  # see hv_reference()
        self._exact: tuple[list[Any], np.ndarray, np.ndarray] | None = None
        self._resumed = False

    # ------------------------------------------------------------------ evaluation
    @property
    def directions(self) -> list[str]:
        return list(self.objectives.values())

    def _evaluate_local(self, archs: list[Any]) -> list[dict[str, float]]:
        rows: list[dict[str, float]] = [{} for _ in archs]
        if not archs:
            return rows
        for evaluator in self.evaluators:
            values = evaluator.evaluate(archs)
            for i in range(len(archs)):
                rows[i].update({m: float(v[i]) for m, v in values.items()})
        return rows

    def evaluate(self, archs: list[Any]) -> list[dict[str, float]]:
        """Metrics of every architecture, evaluating each new one once, split across distributed ranks."""
        new = [a for a in dict.fromkeys(archs) if a not in self.cache]
        mine = new[self.rank :: self.world_size]
        results = self._evaluate_local(mine)
        if self.world_size > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, (mine, results))
            pairs = [(a, r) for part_archs, part_rows in gathered for a, r in zip(part_archs, part_rows)]
        else:
            pairs = list(zip(mine, results))
        for arch, row in pairs:
            self.cache[arch] = row
        return [self.cache[a] for a in archs]

    def objectives_of(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The objective matrix (user's units and directions) of metric rows."""
        return np.array([[row[m] for m in self.objectives] for row in rows], dtype=float).reshape(
            -1, len(self.objectives)
        )

    def feasible(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Mask of the rows that meet every constraint."""
        return feasible_rows(rows, self.constraints)

    def hv_reference(self) -> np.ndarray | None:
        """The one reference point of every hypervolume this search reports (progress and result).

        With ``reference_front``: the exact space's nadir. Otherwise: the nadir of the first generation's feasible
        architectures pushed out by 10 % of each range, fixed from then on, so the hypervolume can only grow.
        ``None`` until a feasible architecture has been evaluated.
        """
        if self.reference_point is None:
            if self.reference_front:
                self._exact = self.exact_front()
                self.reference_point = self._exact[2]
            else:
                F = self.objectives_of(self.history)[self.feasible(self.history)]
                if len(F):
                    self.reference_point = nadir_reference_point(F, self.directions, margin=0.1)
        return self.reference_point

    def history_hypervolume(self) -> float:
        """Hypervolume of the feasible history so far, at :meth:`hv_reference`."""
        F = self.objectives_of(self.history)[self.feasible(self.history)]
        ref = self.hv_reference()
        return hypervolume(F, ref, self.directions) if len(F) and ref is not None else 0.0

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """What :meth:`load_state_dict` needs to continue exactly: history, cache, generation, the strategy's state."""
        return {
            "version": STATE_VERSION,
            "space": self.space.name,
            "objectives": self.objectives,
            "constraints": [str(c) for c in self.constraints],
            "seed": self.seed,
            "generation": self.generation,
            "history": self.history,
            "cache": self.cache,
            "strategy_class": f"{type(self.strategy).__module__}.{type(self.strategy).__qualname__}",
            "strategy": self.strategy.state_dict(),
            "callbacks": {self._callback_key(i, cb): cb.state_dict() for i, cb in enumerate(self.callbacks)},
            "reference_point": None if self.reference_point is None else [float(r) for r in self.reference_point],
            "seconds": self.seconds_before + (time.perf_counter() - self._start if self._start is not None else 0.0),
        }

    @staticmethod
    def _callback_key(index: int, callback: SearchCallback) -> str:
        return f"{index}:{type(callback).__qualname__}"

    def load_state_dict(self, state: Mapping[str, Any], source: str = "the search state") -> None:
        """Continue from :meth:`state_dict` (or a version-1 ``search_state.pkl``, whose strategy was pickled whole).

        Raises:
            UserInputError: when the state belongs to another space, other objectives or other constraints.
        """
        constraints = list(state.get("constraints", []))
        mine = [str(c) for c in self.constraints]
        if state.get("space") != self.space.name or state.get("objectives") != self.objectives or constraints != mine:
            budget = f" and constraints {constraints}" if constraints or mine else ""
            here = f" and {mine}" if constraints or mine else ""
            raise UserInputError(
                f"Cannot resume: {source} is a search of space '{state.get('space')}' with objectives "
                f"{state.get('objectives')}{budget}; this run is '{self.space.name}' with {self.objectives}{here}."
            )
        self.generation, self.history, self.cache = state["generation"], state["history"], state["cache"]
        if int(state.get("version", 1)) < 2:
            self.strategy = state["strategy"]  # version 1 pickled the strategy object itself
            self.strategy.constraints = list(getattr(self.strategy, "constraints", []) or [])
        else:
            self.strategy.load_state_dict(state["strategy"])
        saved = state.get("callbacks", {})
        for i, cb in enumerate(self.callbacks):
            cb.load_state_dict(saved.get(self._callback_key(i, cb), {}))
        self.seconds_before = float(state.get("seconds", 0.0))
        ref = state.get("reference_point")
        self.reference_point = None if ref is None else np.asarray(ref, dtype=float)
        self._resumed = True

    # ------------------------------------------------------------------ the loop
    def run(self) -> SearchResult:
        """Search until ``max_evaluations`` distinct architectures have been evaluated (or the strategy stops)."""
        start = self._start = time.perf_counter()
        if not self._resumed:
            self.strategy.setup(len(self.objectives), self.seed, self.objectives, self.constraints)
        for cb in self.callbacks:
            cb.on_search_start(self)
        while len(self.history) < self.max_evaluations:
            archs = self.strategy.ask()
            if not archs:
                break
            fresh = [a for a in dict.fromkeys(archs) if a not in self.cache]
            left = self.max_evaluations - len(self.history)
            truncated = len(fresh) > left
            if truncated:  # the budget ends inside this generation: evaluate what it allows, tell nothing, stop
                keep = set(fresh[:left])
                archs = [a for a in archs if a in self.cache or a in keep]
                fresh = fresh[:left]
            rows = self.evaluate(archs)
            for arch in fresh:
                row = self.cache[arch]
                extra = {"feasible": bool(self.feasible([row])[0])} if self.constraints else {}
                self.history.append(
                    {"eval": len(self.history), "generation": self.generation, "arch": self.space.to_string(arch),
                     **row, **extra}
                )  # fmt: skip
            for cb in self.callbacks:
                cb.on_evaluated(self, fresh)
            if truncated:
                break
            F = as_minimization(self.objectives_of(rows), self.directions)
            G = constraint_matrix(rows, self.constraints) if self.constraints else None
            self.strategy.tell(archs, F, G)
            self.generation += 1
            self.hv_reference()  # fixed after the first generation
            for cb in self.callbacks:
                cb.on_generation_end(self)
        result = self.result(self.seconds_before + time.perf_counter() - start)
        if self.verify:
            result.verified = self.verified(result)
        for cb in self.callbacks:
            cb.on_search_end(self, result)
        return result

    def verified(self, result: SearchResult) -> list[dict[str, Any]]:
        """The strategy's pick and the ``verify_top`` best architectures, measured by the ``verify`` cost models.

        What a proxy- or surrogate-driven search really found: the pick (if the strategy's summary names one) and
        the best by the first objective: of the front (several objectives) or of the feasible history (one
        objective, e.g. a Pareto score: its top-k are the candidates of the front). Each row has ``on_true_front``:
        whether it is non-dominated among the verified rows in the verifiers' own metrics and directions.

        Every rank measures the same architectures (the verifiers are seeded), so no result is gathered.
        """
        first, direction = next(iter(self.objectives.items()))
        pool = result.front
        if len(self.objectives) == 1:
            pool = [row for row, ok in zip(self.history, self.feasible(self.history)) if ok]
        best = sorted(pool, key=lambda r: r[first], reverse=direction == "max")[: self.verify_top]
        chosen = [("top" if len(self.objectives) == 1 else "front", r["arch"]) for r in best]
        pick = (result.strategy or {}).get("pick", {}).get("arch")
        if pick is not None:
            chosen = [("pick", pick)] + [(role, a) for role, a in chosen if a != pick]
        if not chosen:
            return []
        values: dict[str, Any] = {}
        directions: dict[str, str] = {}
        for verifier in self.verify:
            values.update(verifier.evaluate([a for _, a in chosen]))
            directions.update(verifier.directions)
        rows = [{"role": role, "arch": arch, **{m: float(v[i]) for m, v in values.items()}}
                for i, (role, arch) in enumerate(chosen)]  # fmt: skip
        F = np.array([[row[m] for m in directions] for row in rows], dtype=float)
        on_front = np.zeros(len(rows), dtype=bool)
        on_front[non_dominated_fronts(F, list(directions.values()))[0]] = True
        for row, flag in zip(rows, on_front):
            row["on_true_front"] = bool(flag)
        return rows

    # ------------------------------------------------------------------ result
    def exact_front(self) -> tuple[list[Any], np.ndarray, np.ndarray]:
        """(feasible front architectures, their objectives, the worst value of each objective over the space)."""
        if self.space.size() > self.max_enumerate:
            raise ConfigError(
                f"reference_front enumerates the space, but '{self.space.name}' has {self.space.size()} architectures "
                f"(max_enumerate is {self.max_enumerate})."
            )
        archs = list(self.space.enumerate())
        values: dict[str, np.ndarray] = {}
        for evaluator in self.evaluators:
            values.update(evaluator.evaluate(archs))
        F = np.stack([values[m] for m in self.objectives], axis=1)
        ok = np.ones(len(archs), dtype=bool)
        for c in self.constraints:
            ok &= c.feasible(values[c.metric])
        feasible = np.flatnonzero(ok)
        front = feasible[np.sort(non_dominated_fronts(F[feasible], self.directions)[0])] if feasible.size else feasible
        return [archs[i] for i in front], F[front], nadir_reference_point(F, self.directions, margin=0.0)

    def result(self, seconds: float = 0.0) -> SearchResult:
        """The front of the feasible history, its hypervolume and (``reference_front``) the normalized one."""
        F = self.objectives_of(self.history)
        feasible = np.flatnonzero(self.feasible(self.history))
        front_idx = np.array([], dtype=int)
        if feasible.size:
            front_idx = feasible[np.sort(non_dominated_fronts(F[feasible], self.directions)[0])]
        front = [
            {"arch": self.history[i]["arch"], **{m: self.history[i][m] for m in self.objectives}} for i in front_idx
        ]
        true_F, norm_hv = None, None
        ref = self.hv_reference()
        if ref is None:  # nothing feasible evaluated
            ref = nadir_reference_point(F, self.directions, margin=0.1) if len(F) else np.zeros(len(self.objectives))
        hv = hypervolume(F[front_idx], ref, self.directions) if front_idx.size else 0.0
        if self.reference_front:
            if self._exact is None:
                self._exact = self.exact_front()
            true_F = self._exact[1]
            true_hv = hypervolume(true_F, ref, self.directions)
            norm_hv = hv / true_hv if true_hv > 0 else None
        return SearchResult(
            front=front,
            n_evaluations=len(self.history),
            hypervolume=hv,
            normalized_hypervolume=norm_hv,
            strategy=self.strategy.summary(),
            history=self.history,
            generations=self.generation,
            reference_point=[float(r) for r in ref],
            n_feasible=int(feasible.size),
            seconds=seconds,
            true_front=true_F,
            front_index=front_idx,
        )


def minimize(
    space: SearchSpace,
    strategy: SearchStrategy | StrategyFactory,
    evaluators: Sequence[CostModel | CostModelFactory],
    objectives: Mapping[str, str] | None = None,
    constraints: Mapping[str, Mapping[str, float]] | Sequence[Constraint] | None = None,
    max_evaluations: int = 1000,
    seed: int = 0,
    callbacks: Sequence[SearchCallback] = (),
    reference_front: bool = False,
    max_enumerate: int = 20000,
    state: Mapping[str, Any] | None = None,
    verify: CostModel | CostModelFactory | Sequence[CostModel | CostModelFactory] | None = None,
    verify_top: int = 1,
) -> SearchResult:
    """Run a search and return what it found; writes no files (add callbacks for that).

    Args:
        space: the search space.
        strategy: the strategy, or a factory called with ``space``.
        evaluators: cost models (or factories called with ``space``) whose metrics give objectives and constraints.
        objectives: metric -> ``"min"``/``"max"``; default: every metric of every evaluator, with its direction.
        constraints: ``{metric: {"<=": bound}}`` budgets (``<``, ``<=``, ``>=``, ``>``), see
            :mod:`hwnas_pl.search.constraints`.
        max_evaluations: budget of distinct architectures evaluated (never exceeded).
        seed: seed of the strategy.
        callbacks: :class:`SearchCallback` objects.
        reference_front: enumerate the space for the exact (feasible) front and the normalized hypervolume.
        max_enumerate: largest space size ``reference_front`` may enumerate.
        state: a :meth:`Search.state_dict` to continue from.
        verify: "true" cost models (one or a list) measuring the strategy's pick and the ``verify_top`` best
            architectures at the end (``SearchResult.verified``, ``summary.json``, ``verified.json``): the table or
            training a proxy or surrogate search is judged by.
        verify_top: architectures verified besides the pick (best first by the first objective; of the front, or
            of the feasible history for one objective).

    Example:
        >>> from hwnas_pl.evaluators.nasbench201 import NASBench201TableModel
        >>> from hwnas_pl.evaluators.analytic import AnalyticCostModel
        >>> from hwnas_pl.search.strategies import RandomSearch
        >>> from hwnas_pl.spaces import NASBench201Space
        >>> space = NASBench201Space()
        >>> res = minimize(space, RandomSearch(space, 20), [NASBench201TableModel(space), AnalyticCostModel(space)],
        ...                {"baseline_acc": "max", "params": "min"}, {"params": {"<=": 5e5}}, max_evaluations=40)
        >>> res.n_evaluations, all(p["params"] <= 5e5 for p in res.front)
        (40, True)
    """
    search = Search(space, strategy, evaluators, objectives, constraints, max_evaluations, seed, callbacks,
                    reference_front, max_enumerate, verify, verify_top)  # fmt: skip
    if state is not None:
        search.load_state_dict(state)
    return search.run()
