r"""HW-PR-NAS's Pareto-score surrogate driving a search that spends true evaluations in rounds (thesis §3.2).

The thesis trains the Pareto-score predictor once (``hwnas fit --config configs/hwprnas_nb201.yaml``) and
searches its score (``configs/search/hwprnas_nb201.yaml``: the ``pareto_score`` cost model and the GA). Here the
same predictor (:class:`~hwnas_pl.nn.architecture_encoders.ParetoScoreNet`, AF + GCN + LSTM, the listwise loss of
Eq. 3.6–3.7 over per-batch Pareto ranks, Eq. 3.3–3.5) is refit on every architecture measured so far before each
round (an active-learning reading beyond the thesis), and every true evaluation counts in ``max_evaluations``:

1. ``init_size`` architectures by Latin-hypercube sampling are measured by the search's evaluators.
2. Each round: the predictor is trained from scratch (seeded) on all measured architectures and their objectives
   (``epochs``, batches of ``train_batch_size``, Adam at ``lr``); the ``batch_size`` best-scored architectures not
   yet measured are asked. The candidates are every architecture of the space when it has at most
   ``enumerate_up_to`` (NAS-Bench-201's 15,625), else the population of the GA of
   :class:`~hwnas_pl.search.genetic.GeneticSearch` on the score (population 150, ``ga_generations``).

Why rounds: a one-dimensional score's top cells cluster in one region of the front (on NAS-Bench-201 with this
CPU's latency, the 100 best-scored cells of a predictor trained on 200 span 0.6–2.4 ms of a front reaching 7 ms).
Once measured, cells of that region dominate each other, their Pareto ranks fall in the next fit, and the next
round moves along the front. ``benchmarks/hwprnas_search.py`` compares one-shot and rounds per true evaluation.
Constraints are folded into the objectives as the base strategy's penalty.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.architecture_encoders import PARTS, ParetoScoreNet, encode_architectures
from hwnas_pl.nn.listwise_loss import listwise_pareto_loss
from hwnas_pl.pareto import is_non_dominated, pareto_ranks
from hwnas_pl.search.strategies import SearchStrategy
from hwnas_pl.spaces.base import EncodedSpace, SearchSpace


def fit_pareto_score(
    views: Mapping[str, torch.Tensor],
    stats: Mapping[str, Any],
    F: np.ndarray,
    parts: Sequence[str] = PARTS,
    epochs: int = 40,
    batch_size: int = 18,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int | None = 1,
) -> ParetoScoreNet:
    """A ParetoScoreNet trained on encoded architectures ``views`` with minimised objectives ``F`` (plain torch).

    Each shuffled batch is ranked by non-dominated sorting of its ``F`` rows and the listwise loss is minimised, as
    :class:`~hwnas_pl.modules.ParetoRankModule` does under a Trainer. ``views``/``stats``: of
    :func:`~hwnas_pl.nn.architecture_encoders.encode_architectures`. ``threads``: torch threads while training
    (a network this small trains fastest on one, and far slower on two beside another job; ``None``: unchanged).
    The global RNG and thread count are left as they were.
    """
    n = len(F)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = ParetoScoreNet(stats, ["target"], parts)
            opt = torch.optim.Adam(net.parameters(), lr=lr)
            net.train()
            for _ in range(epochs):
                order = torch.randperm(n)
                for start in range(0, n, batch_size):
                    idx = order[start : start + batch_size]
                    if len(idx) < 2:
                        continue
                    ranks = torch.as_tensor(pareto_ranks(F[idx.numpy()]))
                    loss = listwise_pareto_loss(net({k: v[idx] for k, v in views.items()}), ranks)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
    finally:
        torch.set_num_threads(before)
    return net.eval()


class ParetoScoreSearch(SearchStrategy):
    """Rounds of true evaluations chosen by a Pareto-score predictor refit on everything measured (module doc).

    Args:
        space: an encoded search space.
        batch_size: architectures measured per round.
        init_size: Latin-hypercube architectures measured first.
        epochs: predictor training epochs per round.
        train_batch_size: architectures per listwise batch (thesis: 18).
        lr: Adam's learning rate.
        parts: encoder parts (``af``, ``gcn``, ``lstm``).
        enumerate_up_to: score the whole space when it is at most this large; else search the score with a GA.
        ga_generations: generations of that GA.
        input_shape: input of the architectures' networks (for the AF features: FLOPs, parameters).
        num_classes: classifier outputs (for the AF features).
        threads: torch threads while the predictor trains (``None``: unchanged).
    """

    def __init__(
        self,
        space: SearchSpace,
        batch_size: int = 20,
        init_size: int = 100,
        epochs: int = 40,
        train_batch_size: int = 18,
        lr: float = 1e-3,
        parts: Sequence[str] = PARTS,
        enumerate_up_to: int = 20000,
        ga_generations: int = 250,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        threads: int | None = 1,
    ) -> None:
        super().__init__(space, batch_size)
        if not isinstance(space, EncodedSpace):
            raise ConfigError(f"ParetoScoreSearch needs an encoded space (fixed-length genes); {space.name} is not.")
        if init_size < 2 or epochs < 1 or train_batch_size < 2:
            raise ConfigError("ParetoScoreSearch needs init_size >= 2, epochs >= 1 and train_batch_size >= 2; got "
                              f"{init_size}, {epochs} and {train_batch_size}.")  # fmt: skip
        self.init_size, self.epochs, self.train_batch_size, self.lr = init_size, epochs, train_batch_size, lr
        self.parts, self.enumerate_up_to, self.ga_generations = list(parts), enumerate_up_to, ga_generations
        self.input_shape, self.num_classes, self.threads = tuple(input_shape), num_classes, threads
        self.seed = 0
        self.rng = np.random.default_rng(0)
        self.archs: list[Any] = []  # measured, in order
        self.F = np.zeros((0, 0))
        self.rounds: list[dict[str, Any]] = []
        self._stats: dict[str, Any] | None = None  # encoding statistics and per-architecture views (recomputed)
        self._rows: dict[Any, dict[str, torch.Tensor]] = {}
        self._every: list[Any] | None = None

    def _setup(self, n_obj: int, seed: int) -> None:
        if n_obj < 2:
            raise ConfigError("ParetoScoreSearch ranks Pareto fronts; give it two or more objectives.")
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.F = np.zeros((0, n_obj))

    def _ask(self) -> list[Any]:
        if not self.archs:
            return list(dict.fromkeys(self.space.sample(self.init_size, self.rng, "lhs")))
        t0 = time.perf_counter()
        seed = self.seed + 1000 * len(self.rounds)
        net = fit_pareto_score(self._encode(self.archs), self._stats, self.F, self.parts, self.epochs,
                               self.train_batch_size, self.lr, seed, self.threads)  # fmt: skip
        seen = set(self.archs)
        candidates = [a for a in self._candidates(net, seed) if a not in seen]
        scores = self._score(net, candidates)
        picked = [candidates[i] for i in np.argsort(-scores, kind="stable")[: self.batch_size]]
        self.rounds.append({"measured_before": len(self.archs), "candidates": len(candidates),
                            "fit_and_rank_seconds": time.perf_counter() - t0})  # fmt: skip
        return picked

    def _whole_space(self) -> list[Any] | None:
        """Every architecture of the space (enumerated once), or ``None`` when it has more than enumerate_up_to."""
        size = self.space.size()
        if self._every is None and size is not None and size <= self.enumerate_up_to:
            self._every = list(self.space.enumerate())
        return self._every

    def _encode(self, archs: Sequence[Any]) -> dict[str, torch.Tensor]:
        """The encoder's views of ``archs``, each architecture encoded once.

        The feature statistics are the whole space's when it is enumerable, else those of the initial sample.
        """
        if self._stats is None:
            initial = self.rounds[0]["measured_before"] if self.rounds else len(self.archs)
            basis = self._whole_space() or self.archs[:initial]
            views, self._stats = encode_architectures(self.space, basis, self.input_shape, self.num_classes)
            self._rows.update({a: {k: v[i] for k, v in views.items()} for i, a in enumerate(basis)})
        new = [a for a in dict.fromkeys(archs) if a not in self._rows]
        if new:
            views, _ = encode_architectures(self.space, new, self.input_shape, self.num_classes, self._stats)
            self._rows.update({a: {k: v[i] for k, v in views.items()} for i, a in enumerate(new)})
        rows = [self._rows[a] for a in archs]
        return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}

    def _score(self, net: ParetoScoreNet, archs: Sequence[Any]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        with torch.no_grad():
            return net(self._encode(archs)).numpy()

    def _candidates(self, net: ParetoScoreNet, seed: int) -> list[Any]:
        every = self._whole_space()
        if every is not None:
            return every
        from hwnas_pl.evaluators.base import CostModel
        from hwnas_pl.search.genetic import GeneticSearch
        from hwnas_pl.search.minimize import minimize

        score = self._score

        class Score(CostModel):
            directions = {"pareto_score": "max"}

            def _evaluate(self, archs: list[Any], out: dict[str, Any]) -> None:
                out["pareto_score"] = score(net, archs).tolist()

        ga = GeneticSearch(self.space, population_size=150, generations=self.ga_generations, tournament_size=2,
                           mutation_rate=0.15)  # fmt: skip
        res = minimize(self.space, ga, [Score(self.space)], {"pareto_score": "max"}, max_evaluations=10**9,
                       seed=seed)  # fmt: skip
        return [self.space.from_string(row["arch"]) for row in res.history]

    def _tell(self, archs: list[Any], F: np.ndarray, G: np.ndarray | None) -> None:
        seen = set(self.archs)
        new = [i for i, a in enumerate(archs) if a not in seen]
        self.archs += [archs[i] for i in new]
        self.F = np.concatenate([self.F, np.asarray(F, dtype=float)[new]])
        if self.rounds:
            front = is_non_dominated(self.F)
            self.rounds[-1]["new_on_measured_front"] = int(front[-len(new) :].sum()) if new else 0

    def summary(self) -> dict[str, Any]:
        """Rounds run: measured architectures before each, candidates scored, and how many joined the front."""
        return {"init_size": self.init_size, "rounds": self.rounds}

    def _state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "seed": self.seed, "archs": self.archs, "F": self.F,
                "rounds": self.rounds}  # fmt: skip

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.seed, self.archs, self.F, self.rounds = state["seed"], list(state["archs"]), state["F"], state["rounds"]
