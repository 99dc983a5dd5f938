"""Search callbacks (:class:`~hwnas_pl.search.minimize.SearchCallback`): what a search writes, logs and draws.

- :class:`SearchCheckpoint`: ``search_state.pkl`` after every generation (rank 0, atomic).
- :class:`SearchOutputs`: ``pareto_front.json``, ``history.csv`` and ``summary.json`` at the end.
- :class:`ParetoPlot`: ``pareto_front.png`` (the exact front drawn when the search computed it).
- :class:`WandbSearchLogger`: evaluations and hypervolume per generation; the front as a table and the plot.
- :class:`SearchProgressBar`: a tqdm bar of the evaluations.

Files are written on rank 0 only; every rank runs the same search, so nothing has to be gathered.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_pl.io import save_figure_atomic, write_atomic
from hwnas_pl.search.minimize import Search, SearchCallback, SearchResult

STATE_FILE = "search_state.pkl"
#: what a finished or running search leaves in its output_dir
RESULT_FILES = (STATE_FILE, "summary.json", "pareto_front.json", "history.csv", "pareto_front.png", "verified.json")


class SearchCheckpoint(SearchCallback):
    """Write :meth:`Search.state_dict` to ``dirpath/search_state.pkl`` after every generation.

    The file stays at the last completed generation, so a resumed search asks exactly what this one would have.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.path = Path(dirpath) / STATE_FILE

    def on_generation_end(self, search: Search) -> None:
        if search.rank != 0:
            return
        write_atomic(self.path, pickle.dumps(search.state_dict()))


class SearchOutputs(SearchCallback):
    """``pareto_front.json`` (``{arch, <objective>...}``), ``history.csv`` (every evaluation), ``summary.json``."""

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)

    def on_search_end(self, search: Search, result: SearchResult) -> None:
        result.output_dir = self.dirpath
        if search.rank != 0:
            return
        out = self.dirpath
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "pareto_front.json", json.dumps(result.front, indent=1))
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=list(search.history[0]) if search.history else ["eval", "arch"])
        writer.writeheader()
        writer.writerows(search.history)
        write_atomic(out / "history.csv", table.getvalue())
        write_atomic(out / "summary.json", json.dumps(result.summary(search), indent=1))
        if result.verified is not None:
            write_atomic(out / "verified.json", json.dumps(result.verified, indent=1))


#: unit suffixes of metric names, as an axis label shows them
UNITS = {"ms": "ms", "s": "s", "mj": "mJ", "mb": "MB", "acc": "%", "mw": "mW", "uj": "µJ"}


def metric_label(name: str, direction: str) -> str:
    """An axis label that reads as a unit: ``latency_ms`` (min) -> ``latency (ms, lower is better)``.

    Example:
        >>> metric_label("latency_ms", "min"), metric_label("baseline_acc", "max"), metric_label("params", "min")
        ('latency (ms, lower is better)', 'baseline acc (%, higher is better)', 'params (lower is better)')
    """
    words = name.split("_")
    unit = UNITS.get(words[-1].lower())
    base = " ".join(words[:-1] if unit and words[-1].lower() != "acc" else words)
    better = "lower is better" if direction == "min" else "higher is better"
    return f"{base} ({unit}, {better})" if unit else f"{base} ({better})"


def front_region(F: np.ndarray, front: np.ndarray, margin: float = 0.15) -> tuple[tuple[float, float], ...]:
    """Axis limits around the front's points (pushed out by ``margin`` of their range), per objective."""
    points = F[front] if len(front) else F
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = np.where(hi > lo, (hi - lo) * margin, np.abs(hi) * margin + 1e-9)
    return tuple((float(a), float(b)) for a, b in zip(lo - pad, hi + pad))


class ParetoPlot(SearchCallback):
    """The evaluated architectures and the found front in objective space (first two objectives), as a PNG.

    Left: zoomed to the front's region (far-off cells, e.g. networks at chance accuracy, do not stretch the axes);
    right: the whole cloud. The title names the space, the strategy, the seed, the evaluations and the normalized
    hypervolume when the exact front is known; axes read as units (``latency (ms, lower is better)``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def draw(self, search: Search, result: SearchResult) -> Any:
        """The figure (two panels) of a finished search."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        F = search.objectives_of(search.history)
        front_idx, true_F = result.front_index, result.true_front
        names, directions = list(search.objectives), search.directions
        x, y = (0, 1) if len(names) >= 2 else (0, 0)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        bad = ~search.feasible(search.history) if search.constraints else np.zeros(len(F), dtype=bool)
        for ax in axes:
            ax.scatter(F[~bad, x], F[~bad, y], s=8, c="0.7", label=f"evaluated ({len(F)})")
            if bad.any():
                ax.scatter(F[bad, x], F[bad, y], s=8, c="0.85", marker="x", label=f"over budget ({int(bad.sum())})")
            if true_F is not None and len(true_F):
                order = np.argsort(true_F[:, x])
                where = "post" if directions[x] == directions[y] else "pre"  # the attainment staircase turns
                ax.step(true_F[order, x], true_F[order, y], where=where, c="k", lw=1, label="exact front")
            ax.scatter(F[front_idx, x], F[front_idx, y], s=18, c="tab:red", label=f"found front ({len(front_idx)})")
            for c in search.constraints:  # budgets on a plotted metric, e.g. AnalogNAS's T_AVM
                if c.metric == names[x]:
                    ax.axvline(c.bound, ls="--", c="tab:blue", lw=1, label=f"budget {c}")
                elif c.metric == names[y]:
                    ax.axhline(c.bound, ls="--", c="tab:blue", lw=1, label=f"budget {c}")
            top1 = ((result.strategy or {}).get("top1") or {}).get("arch")
            rows = [i for i, h in enumerate(search.history) if h["arch"] == top1]
            if rows:  # the strategy's own pick (AnalogNAS's top-1)
                ax.scatter(F[rows, x], F[rows, y], s=120, marker="*", c="gold", edgecolors="k", label="top-1 pick")
            ax.set_xlabel(metric_label(names[x], directions[x]))
            ax.set_ylabel(metric_label(names[y], directions[y]))
        if len(F):
            limits = front_region(F, front_idx)
            axes[0].set_xlim(*limits[x])
            axes[0].set_ylim(*limits[y])
        axes[0].set_title("front region", fontsize=9)
        axes[1].set_title("all evaluated", fontsize=9)
        axes[0].legend(loc="best", fontsize=8)
        norm = result.normalized_hypervolume
        title = f"{search.space.name} · {type(search.strategy).__name__} · seed {search.seed} · "
        title += f"{len(search.history)} evaluations" + (f" · normalized HV {norm:.4f}" if norm is not None else "")
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        return fig

    def on_search_end(self, search: Search, result: SearchResult) -> None:
        if search.rank != 0:
            return
        import matplotlib.pyplot as plt

        fig = self.draw(search, result)
        save_figure_atomic(fig, self.path, dpi=120)
        plt.close(fig)


class WandbSearchLogger(SearchCallback):
    """A W&B run of the search (offline unless ``mode`` says otherwise), on rank 0.

    Logs ``search/evaluations`` and ``search/hypervolume`` after each generation; at the end the front as a
    table, the plot (when ``plot`` is given and written first) and the summary's numbers.

    Args:
        dir: where the run's files go.
        plot: the PNG a :class:`ParetoPlot` writes, to log with the front.
        **kwargs: ``wandb.init`` arguments (``project``, ``mode``, ``name``, ...).
    """

    def __init__(self, dir: str | Path = ".", plot: str | Path | None = None, **kwargs: Any) -> None:
        self.dir, self.plot, self.kwargs = Path(dir), plot, kwargs
        self.run: Any = None
        self.run_id: str | None = None  # a resumed search continues this W&B run

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.run_id = state.get("run_id", self.run_id)

    def on_search_start(self, search: Search) -> None:
        if search.rank != 0:
            return
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        kwargs = {"dir": str(self.dir), "mode": "offline", "job_type": "search", **self.kwargs}
        config = {"space": search.space.name, "objectives": search.objectives, "budget": search.max_evaluations,
                  "constraints": [str(c) for c in search.constraints]}  # fmt: skip
        if self.run_id is not None:
            kwargs = {**kwargs, "id": self.run_id, "resume": "allow"}
        self.run = wandb.init(config=config, **kwargs)
        self.run_id = self.run.id

    def on_generation_end(self, search: Search) -> None:
        if self.run is not None:
            hv = search.history_hypervolume()
            self.run.log({"search/evaluations": len(search.history), "search/hypervolume": hv})

    def on_search_end(self, search: Search, result: SearchResult) -> None:
        if self.run is None:
            return
        import wandb

        front = result.front
        table = wandb.Table(columns=list(front[0]) if front else ["arch"], data=[list(r.values()) for r in front])
        logged: dict[str, Any] = {"search/pareto_front": table}
        if self.plot is not None and Path(self.plot).is_file():
            logged["search/pareto_front_plot"] = wandb.Image(str(self.plot))
        self.run.log(logged)
        summary = result.summary(search)
        self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float)) and v is not None})
        self.run.finish()
        self.run = None


class SearchProgressBar(SearchCallback):
    """A tqdm bar counting evaluations against the budget (rank 0)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_search_start(self, search: Search) -> None:
        if search.rank != 0:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=search.max_evaluations, initial=len(search.history), desc="hwnas search", unit="arch")

    def on_evaluated(self, search: Search, archs: list[Any]) -> None:
        if self.bar is not None:
            self.bar.update(len(archs))

    def on_search_end(self, search: Search, result: SearchResult) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
