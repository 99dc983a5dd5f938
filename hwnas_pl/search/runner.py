"""``hwnas search``: :func:`~hwnas_pl.search.minimize.minimize` with resume and the output callbacks.

Outputs in ``output_dir``: ``pareto_front.json`` (objects with ``arch`` and one key per objective),
``history.csv`` (every evaluated architecture), ``pareto_front.png`` (objective space; the exact front drawn when
the space is enumerated), ``summary.json`` (evaluations, hypervolume, normalized hypervolume) and
``search_state.pkl`` (the checkpoint ``resume=True`` continues from, written every generation).

Under ``torchrun`` every rank runs the same strategy with the same seed; each generation's new architectures are
split across ranks, evaluated, and gathered, so every rank tells the strategy the same values (rank 0 writes).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwnas_pl.errors import UserInputError
from hwnas_pl.evaluators.base import CostModel, CostModelFactory
from hwnas_pl.search.callbacks import (
    RESULT_FILES,
    STATE_FILE,
    ParetoPlot,
    SearchCheckpoint,
    SearchOutputs,
    SearchProgressBar,
    WandbSearchLogger,
)
from hwnas_pl.search.minimize import STATE_VERSION, Search, SearchCallback, SearchResult, StrategyFactory, _dist
from hwnas_pl.search.strategies import SearchStrategy
from hwnas_pl.spaces.base import SearchSpace

__all__ = ["STATE_FILE", "STATE_VERSION", "SearchResult", "SearchRunner", "StrategyFactory", "_dist"]


class SearchRunner:
    """A multi-objective population search over one space, with objectives and constraints from cost models.

    Args:
        space: the search space.
        strategy: the strategy, or a factory called with ``space`` (YAML: class_path + init_args).
        evaluators: cost models (or factories called with ``space``) whose metrics give the objectives.
        objectives: metric -> ``"min"``/``"max"``; default: every metric of every evaluator, with its direction.
        constraints: budgets ``{metric: {"<=": bound}}`` (also ``<``, ``>=``, ``>``); the front holds only
            architectures within every budget (``G <= 0``, pymoo's convention).
        max_evaluations: budget of distinct architectures evaluated (never exceeded).
        output_dir: where results and the checkpoint go.
        seed: seed of the strategy.
        reference_front: enumerate the space (must be finite and at most ``max_enumerate`` architectures) to compute
            the exact Pareto front, the normalized hypervolume and draw the true front.
        max_enumerate: largest space size ``reference_front`` may enumerate.
        wandb: keyword arguments for ``wandb.init`` (e.g. ``{project: hwnas, mode: offline}``); ``None`` disables.
        progress: show a progress bar.
        callbacks: more :class:`~hwnas_pl.search.minimize.SearchCallback` objects, run after the built-in ones.
        overwrite: replace the results of an earlier search in ``output_dir`` (otherwise a new search refuses a
            folder that holds them; ``resume=True`` continues them).
        verify: "true" cost models (one or a list) measuring the strategy's pick and the ``verify_top`` best
            architectures at the end (``verified.json``, also in ``summary.json``), e.g. the table a proxy or
            surrogate search is judged by; each row says whether it is on the verified rows' true front.
        verify_top: architectures verified besides the pick (best first by the first objective).
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
        constraints: Mapping[str, Mapping[str, float]] | None = None,
        callbacks: Sequence[SearchCallback] = (),
        overwrite: bool = False,
        verify: CostModel | CostModelFactory | Sequence[CostModel | CostModelFactory] | None = None,
        verify_top: int = 1,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        plot = self.output_dir / "pareto_front.png"
        builtin: list[SearchCallback] = [SearchProgressBar()] if progress else []
        builtin += [SearchCheckpoint(self.output_dir), SearchOutputs(self.output_dir), ParetoPlot(plot)]
        if wandb is not None:
            builtin.append(WandbSearchLogger(self.output_dir, plot, **wandb))
        self.search = Search(space, strategy, evaluators, objectives, constraints, max_evaluations, seed,
                             [*builtin, *callbacks], reference_front, max_enumerate, verify, verify_top)  # fmt: skip

    # the search's parts, as the runner exposed them before search callbacks
    space = property(lambda self: self.search.space)
    strategy = property(lambda self: self.search.strategy)
    evaluators = property(lambda self: self.search.evaluators)
    objectives = property(lambda self: self.search.objectives)
    constraints = property(lambda self: self.search.constraints)
    history = property(lambda self: self.search.history)
    cache = property(lambda self: self.search.cache)
    generation = property(lambda self: self.search.generation)
    rank = property(lambda self: self.search.rank)
    world_size = property(lambda self: self.search.world_size)
    max_evaluations = property(lambda self: self.search.max_evaluations)

    def state_path(self) -> Path:
        return self.output_dir / STATE_FILE

    def load_state(self) -> None:
        """Continue from ``search_state.pkl`` in ``output_dir`` (also one written before search callbacks).

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
        self.search.load_state_dict(state, source=f"'{path}'")

    def run(self, resume: bool = False) -> SearchResult:
        """Search until ``max_evaluations`` distinct architectures have been evaluated; write the outputs."""
        if resume:
            self.load_state()
        else:
            self._claim_output_dir()
        return self.search.run()

    def _claim_output_dir(self) -> None:
        """Refuse (or with ``overwrite``, clear) the results of another search in ``output_dir``.

        Raises:
            UserInputError: naming the folder, what is in it and the three ways on.
        """
        found = [name for name in RESULT_FILES if (self.output_dir / name).exists()]
        if not found:
            return
        if not self.overwrite:
            raise UserInputError(
                f"output_dir '{self.output_dir}' already holds a search's results ({', '.join(found)}); expected a new "
                "folder: pass --resume true to continue that search, --overwrite true to replace it, or another "
                "--output_dir."
            )
        if self.rank == 0:
            for name in found:  # no stale plot or checkpoint beside the new run's files
                (self.output_dir / name).unlink()
