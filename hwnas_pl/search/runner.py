"""Runs a population search: ask, evaluate (sharded over ranks), tell, checkpoint, until the budget is spent.

Outputs in ``output_dir``: ``pareto_front.json`` (objects with ``arch`` and one key per objective),
``history.csv`` (every evaluated architecture), ``pareto_front.png`` (objective space; the exact front drawn when
the space is enumerated), ``summary.json`` (evaluations, hypervolume, normalized hypervolume) and
``search_state.pkl`` (the checkpoint ``resume=True`` continues from, written every generation).

Under ``torchrun`` every rank runs the same strategy with the same seed; each generation's new architectures are
split across ranks, evaluated, and gathered, so every rank tells the strategy the same values (rank 0 writes).
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.hardware.cost_model import CostModel, CostModelFactory
from hwnas_pl.pareto import as_minimization, hypervolume, nadir_reference_point, non_dominated_fronts
from hwnas_pl.search.strategies import SearchStrategy
from hwnas_pl.spaces.base import SearchSpace

STATE_FILE = "search_state.pkl"
STATE_VERSION = 1

#: A strategy or cost-model class given in YAML by class_path and init_args, without the space (passed in).
StrategyFactory = Callable[[SearchSpace], SearchStrategy]


@dataclass
class SearchResult:
    """What a finished search found."""

    front: list[dict[str, Any]]
    n_evaluations: int
    hypervolume: float
    normalized_hypervolume: float | None
    output_dir: Path
    strategy: dict[str, Any] | None = None  # the strategy's own summary (e.g. AnalogNAS's top-1), if it has one


def _dist() -> tuple[int, int]:
    """(rank, world size), initialising a gloo process group when launched by torchrun and not yet initialised."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class SearchRunner:
    """A multi-objective population search over one space with objectives from cost models.

    Args:
        space: the search space.
        strategy: the strategy, or a factory called with ``space`` (YAML: class_path + init_args).
        evaluators: cost models (or factories called with ``space``) whose metrics give the objectives.
        objectives: metric -> ``"min"``/``"max"``; default: every metric of every evaluator, with its direction.
        max_evaluations: budget of distinct architectures evaluated (never exceeded).
        output_dir: where results and the checkpoint go.
        seed: seed of the strategy.
        reference_front: enumerate the space (must be finite and at most ``max_enumerate`` architectures) to compute
            the exact Pareto front, the normalized hypervolume and draw the true front.
        max_enumerate: largest space size ``reference_front`` may enumerate.
        wandb: keyword arguments for ``wandb.init`` (e.g. ``{project: hwnas, mode: offline}``); ``None`` disables.
        progress: show a progress bar.
    """

    def __init__(
        self,
        space: SearchSpace,
        strategy: SearchStrategy | StrategyFactory,
        evaluators: Sequence[CostModel | CostModelFactory],
        objectives: Mapping[str, str] | None = None,
        max_evaluations: int = 1000,
        output_dir: str = "outputs/search",
        seed: int = 0,
        reference_front: bool = False,
        max_enumerate: int = 20000,
        wandb: dict[str, Any] | None = None,
        progress: bool = True,
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
        if max_evaluations < 1:
            raise ConfigError(f"max_evaluations must be >= 1, got {max_evaluations}.")
        self.max_evaluations = max_evaluations
        self.output_dir = Path(output_dir)
        self.seed = seed
        self.reference_front = reference_front
        self.max_enumerate = max_enumerate
        self.wandb_kwargs = wandb
        self.progress = progress
        self.rank, self.world_size = _dist()
        # state
        self.history: list[dict[str, Any]] = []
        self.cache: dict[Any, dict[str, float]] = {}
        self.generation = 0

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

    # ------------------------------------------------------------------ checkpoint
    def state_path(self) -> Path:
        return self.output_dir / STATE_FILE

    def save_state(self) -> None:
        """Write the checkpoint (rank 0), atomically."""
        if self.rank != 0:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "version": STATE_VERSION,
            "space": self.space.name,
            "objectives": self.objectives,
            "seed": self.seed,
            "generation": self.generation,
            "history": self.history,
            "cache": self.cache,
            "strategy": self.strategy,
        }
        tmp = self.state_path().with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(state))
        tmp.replace(self.state_path())

    def load_state(self) -> None:
        """Continue from ``search_state.pkl`` in ``output_dir``.

        Raises:
            UserInputError: when there is no checkpoint, or it belongs to another space or other objectives.
        """
        path = self.state_path()
        if not path.is_file():
            raise UserInputError(f"Cannot resume: '{path}' does not exist; expected the checkpoint of an earlier run.")
        try:
            state = pickle.loads(path.read_bytes())
        except Exception as err:  # noqa: BLE001 - a damaged file of any kind gets one sentence
            raise UserInputError(f"Cannot resume: '{path}' could not be read ({type(err).__name__}).") from None
        if state.get("space") != self.space.name or state.get("objectives") != self.objectives:
            raise UserInputError(
                f"Cannot resume: '{path}' is a search of space '{state.get('space')}' with objectives "
                f"{state.get('objectives')}; this run is '{self.space.name}' with {self.objectives}."
            )
        self.generation, self.history, self.cache = state["generation"], state["history"], state["cache"]
        self.strategy = state["strategy"]

    # ------------------------------------------------------------------ the loop
    def run(self, resume: bool = False) -> SearchResult:
        """Search until ``max_evaluations`` distinct architectures have been evaluated; write the outputs."""
        start = time.perf_counter()
        if resume:
            self.load_state()
        else:
            self.strategy.setup(len(self.objectives), self.seed, self.objectives)
        run = self._init_wandb()
        bar = self._progress_bar()
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
                self.history.append(
                    {"eval": len(self.history), "generation": self.generation, "arch": self.space.to_string(arch),
                     **self.cache[arch]}
                )  # fmt: skip
            if bar is not None:
                bar.update(len(fresh))
            if truncated:
                break
            self.strategy.tell(archs, as_minimization(self.objectives_of(rows), self.directions))
            self.generation += 1
            self.save_state()
            if run is not None:
                run.log({"search/evaluations": len(self.history), "search/hypervolume": self._history_hv()})
        if bar is not None:
            bar.close()
        # search_state.pkl stays at the last completed generation: a resumed run asks exactly what this one would have
        return self._write_outputs(time.perf_counter() - start, run)

    # ------------------------------------------------------------------ outputs
    def _progress_bar(self):
        if not self.progress or self.rank != 0:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.max_evaluations, initial=len(self.history), desc="hwnas search", unit="arch")

    def _init_wandb(self):
        if self.wandb_kwargs is None or self.rank != 0:
            return None
        import wandb

        kwargs = {"dir": str(self.output_dir), "mode": "offline", "job_type": "search", **self.wandb_kwargs}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        config = {"space": self.space.name, "objectives": self.objectives, "budget": self.max_evaluations}
        return wandb.init(config=config, **kwargs)

    def _history_hv(self) -> float:
        F = self.objectives_of(self.history)
        return hypervolume(F, nadir_reference_point(F, self.directions, margin=0.1), self.directions)

    def exact_front(self) -> tuple[list[Any], np.ndarray, np.ndarray]:
        """(front architectures, their objectives, the worst value of each objective over the whole space)."""
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
        front = np.sort(non_dominated_fronts(F, self.directions)[0])
        return [archs[i] for i in front], F[front], nadir_reference_point(F, self.directions, margin=0.0)

    def _write_outputs(self, seconds: float, run) -> SearchResult:
        F = self.objectives_of(self.history)
        front_idx = np.sort(non_dominated_fronts(F, self.directions)[0]) if len(F) else np.array([], dtype=int)
        front = [
            {"arch": self.history[i]["arch"], **{m: self.history[i][m] for m in self.objectives}} for i in front_idx
        ]
        true_F, norm_hv = None, None
        if self.reference_front:
            _, true_F, ref = self.exact_front()
            hv = hypervolume(F[front_idx], ref, self.directions)
            norm_hv = hv / hypervolume(true_F, ref, self.directions)
        else:
            ref = nadir_reference_point(F, self.directions, margin=0.1)
            hv = hypervolume(F[front_idx], ref, self.directions)
        result = SearchResult(front, len(self.history), hv, norm_hv, self.output_dir, self.strategy.summary())
        if self.rank != 0:
            return result
        out = self.output_dir
        out.mkdir(parents=True, exist_ok=True)
        (out / "pareto_front.json").write_text(json.dumps(front, indent=1))
        with (out / "history.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.history[0]) if self.history else ["eval", "arch"])
            writer.writeheader()
            writer.writerows(self.history)
        summary = {
            "space": self.space.name,
            "objectives": self.objectives,
            "n_evaluations": len(self.history),
            "generations": self.generation,
            "front_size": len(front),
            "reference_point": [float(r) for r in ref],
            "hypervolume": hv,
            "normalized_hypervolume": norm_hv,
            "seconds": seconds,
        }
        if result.strategy is not None:
            summary["strategy"] = result.strategy
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        self._plot(F, front_idx, true_F, out / "pareto_front.png")
        if run is not None:
            import wandb

            table = wandb.Table(columns=list(front[0]) if front else ["arch"], data=[list(r.values()) for r in front])
            run.log(
                {"search/pareto_front": table, "search/pareto_front_plot": wandb.Image(str(out / "pareto_front.png"))}
            )
            run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float)) and v is not None})
            run.finish()
        return result

    def _plot(self, F: np.ndarray, front_idx: np.ndarray, true_F: np.ndarray | None, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(self.objectives)
        x, y = (0, 1) if len(names) >= 2 else (0, 0)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.scatter(F[:, x], F[:, y], s=8, c="0.75", label=f"evaluated ({len(F)})")
        if true_F is not None:
            order = np.argsort(true_F[:, x])
            same_sense = self.directions[x] == self.directions[y]  # the attainment staircase turns the other way
            where = "post" if same_sense else "pre"
            ax.step(true_F[order, x], true_F[order, y], where=where, c="k", lw=1, label="exact front")
        ax.scatter(F[front_idx, x], F[front_idx, y], s=18, c="tab:red", label=f"found front ({len(front_idx)})")
        ax.set_xlabel(f"{names[x]} ({self.objectives[names[x]]})")
        ax.set_ylabel(f"{names[y]} ({self.objectives[names[y]]})")
        ax.set_title(f"{self.space.name}: {len(self.history)} evaluations")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
