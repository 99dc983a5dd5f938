r"""How well the supernet ranks sub-networks, every epoch: the thesis's ranking-quality measure (§3.3).

A fixed set of sub-networks (a reference table's rows, or a seeded sample of the unpruned space) is ranked with the
supernet's shared weights and against a reference's true accuracy, after every ``every_n_epochs``-th epoch
(warm-up included), so the curve shows when and how α changes the ranking. Three Kendall tau-b values:

- ``tau_accuracy``: estimated vs true accuracy;
- ``tau_pareto``: Pareto ranks of (estimated accuracy, cost) vs of (true accuracy, cost), cost from the module's
  cost model;
- ``tau_alpha``: α's predicted score :math:`P_s = \sum_{o \in s} \hat\alpha_o` vs the negated true Pareto rank
  (the thesis attributes its 0.94 to α). NaN while α is uniform (warm-up).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from typing_extensions import override

from hwnas_pl.callbacks.prpnas_sampling import DIRECTIONS, Reference, all_alive, supernet_of
from hwnas_pl.distributed import write_on_rank_zero
from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.base import CostModelFactory
from hwnas_pl.io import write_atomic
from hwnas_pl.modules.supernet_module import SupernetModule
from hwnas_pl.pareto import kendall_tau, pareto_ranks
from hwnas_pl.prpnas import path_scores, sample_paths


class SupernetRanking(L.Callback):
    """Kendall tau of the supernet's ranking of a fixed set of sub-networks against a reference, every epoch.

    Writes ``ranking.json`` in ``output_dir`` (default ``<trainer.default_root_dir>/export``) after each measured
    epoch: ``history`` (per epoch: ``epoch``, ``phase``, ``n``, ``tau_accuracy``, ``tau_pareto``, ``tau_alpha``)
    and the last measurement's ``archs``, ``est_acc``, ``true_acc`` and costs. Logs ``ranking/tau_accuracy``,
    ``ranking/tau_pareto`` and ``ranking/tau_alpha``. After a pruning only the set's sub-networks whose ops are all
    alive can be evaluated; ``n`` says how many were.

    Args:
        reference: the true accuracy, a cost model called with the space: a ``TableCostModel`` of independently
            trained cells (its rows are the set) or an accuracy model of the whole space (e.g. NAS-Bench-201).
        reference_metric: the reference's accuracy metric (default: its first).
        num_samples: for a reference that is not a table, sub-networks sampled (seeded) from the unpruned space;
            for a table, at most this many of its rows (``null``: all).
        every_n_epochs: measure after every this many epochs.
        num_batches: held-out batches per accuracy estimate.
        output_dir: where ``ranking.json`` goes.
        seed: seed of the set.
    """

    def __init__(
        self,
        reference: CostModelFactory,
        reference_metric: str | None = None,
        num_samples: int | None = 100,
        every_n_epochs: int = 1,
        num_batches: int = 4,
        output_dir: str | None = None,
        seed: int = 4,
    ) -> None:
        if every_n_epochs < 1 or num_batches < 1 or (num_samples is not None and num_samples < 3):
            raise ConfigError(
                "SupernetRanking needs every_n_epochs >= 1, num_batches >= 1 and num_samples >= 3 (or null), got "
                f"{every_n_epochs}, {num_batches} and {num_samples}."
            )
        self.reference_factory, self.reference_metric = reference, reference_metric
        self.num_samples, self.every_n_epochs, self.num_batches = num_samples, every_n_epochs, num_batches
        self.output_dir, self.seed = output_dir, seed
        self.reference: Reference | None = None
        self.paths: np.ndarray | None = None
        self.true_acc: np.ndarray | None = None
        self.history: list[dict[str, Any]] = []
        self.last: dict[str, Any] = {}

    @property
    def state_key(self) -> str:
        return "SupernetRanking"

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        module = supernet_of(pl_module, "SupernetRanking")
        self.reference = Reference(self.reference_factory, self.reference_metric, module)
        rng = np.random.default_rng(self.seed)
        if self.reference.table is not None:
            rows = self.reference.table
            if self.num_samples is not None and self.num_samples < len(rows):
                rows = rows[np.sort(rng.choice(len(rows), size=self.num_samples, replace=False))]
            self.paths = rows
        else:
            full = [list(range(len(c))) for c in module.supernet.choices]
            self.paths = sample_paths(full, self.num_samples or 100, rng)
        self.true_acc = self.reference.accuracy(module, self.paths)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            entry = self.measure(trainer, supernet_of(pl_module, "SupernetRanking"))
            pl_module.log_dict({f"ranking/{k}": entry[k] for k in ("tau_accuracy", "tau_pareto", "tau_alpha")})

    def measure(self, trainer: L.Trainer, module: SupernetModule) -> dict[str, Any]:
        """Rank the alive part of the set now; append to the history and write ``ranking.json``."""
        keep = all_alive(module, self.paths)
        paths, true_acc = self.paths[keep], self.true_acc[keep]
        est_acc = module.estimate_accuracy(paths, module.heldout_batches(self.num_batches))
        cost = module.costs(paths) if len(paths) else np.zeros(0)
        true_ranks = pareto_ranks(np.stack([true_acc, cost], axis=1), DIRECTIONS)
        est_ranks = pareto_ranks(np.stack([est_acc, cost], axis=1), DIRECTIONS)
        scores = path_scores(module.alpha_probs().detach().cpu(), paths).numpy()
        entry = {
            "epoch": int(trainer.current_epoch),
            "phase": module.phase,
            "n": int(len(paths)),
            "tau_accuracy": _tau(est_acc, true_acc),
            "tau_pareto": _tau(est_ranks, true_ranks),
            "tau_alpha": _tau(scores, -true_ranks),
        }
        self.history = [h for h in self.history if h["epoch"] != entry["epoch"]] + [entry]
        self.last = {
            "reference_metric": self.reference.metric,
            "archs": [module.arch_string(p) for p in paths],
            "est_acc": est_acc.tolist(),
            "true_acc": true_acc.tolist(),
            module.cost_metric: cost.tolist(),
        }
        out = Path(self.output_dir) if self.output_dir else Path(trainer.default_root_dir) / "export"

        def write() -> None:
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(out / "ranking.json", json.dumps({"history": self.history, **self.last}, indent=1))

        write_on_rank_zero(trainer, write)
        return entry

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall tau-b, NaN when either side is constant or fewer than two points are given."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(kendall_tau(a, b))
