"""PRP-NAS operation pruning by Pareto rank and hypervolume improvement (thesis §3.3, Algorithm 2 step 3, Eq. 3.10)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
from typing_extensions import override

from hwnas_pl.callbacks.prpnas_sampling import DIRECTIONS, best_first, check_sample_size, evaluate_sample, supernet_of
from hwnas_pl.distributed import decide_on_rank_zero
from hwnas_pl.errors import ConfigError
from hwnas_pl.modules.supernet_module import SupernetModule
from hwnas_pl.pareto import hypervolume, hypervolume_improvement, nadir_reference_point, pareto_ranks
from hwnas_pl.prpnas import greedy_hvi_selection


class OperationPruning(L.Callback):
    r"""Delete the ops that no Pareto-selected sub-network uses (thesis §3.3, Algorithm 2 step 3, Eq. 3.10).

    At the end of each epoch in ``at_epochs`` (0-based), and of every ``every_n_epochs``-th search epoch when set
    (Algorithm 2 prunes in every search epoch: ``every_n_epochs: 1``): sample ``num_samples`` sub-networks, keep
    those of Pareto ranks 1–2, choose ``keep`` of them by greedy hypervolume improvement
    (:func:`~hwnas_pl.prpnas.greedy_hvi_selection`) and prune, in every layer, each op none of the chosen uses. The
    reference point is the nadir of the pre-sampled sub-networks (their lowest accuracy and highest cost, pushed out
    by ``ref_margin`` of the range): the thesis's "pre-sampled low-accuracy, high-latency sub-network" [AMBIG: which
    one is not said].

    The decision is "used by none of the HVI-selected sub-networks"; the per-op HVI of Eq. 3.10,
    HV(P) − HV(P ∖ S_op) over the sub-networks S_op that use the op, is computed and reported with each pruning in
    :attr:`records` (and the checkpoint), not used to decide. A pruning missed because a run stopped between the
    epoch end and its checkpoint is done at the start of the next epoch.

    Pruning shrinks the supernet's memory and the search space; with single-path training (one path per search
    step) it does not make a step faster. The thesis's 3.8 vs 15.1 GPU-days (Table 3.11) come from its
    multi-path training.

    Args:
        at_epochs: epochs after which to prune.
        every_n_epochs: also prune after every this many search epochs (``null``: only ``at_epochs``).
        num_samples: sub-networks sampled per pruning.
        keep: n, sub-networks chosen by hypervolume improvement.
        num_batches: held-out batches per accuracy estimate.
        ref_margin: how far beyond the sample's worst point the reference point lies, as a share of each range.
        seed: seed of the sampler.
    """

    def __init__(
        self,
        at_epochs: Sequence[int] = (30,),
        every_n_epochs: int | None = None,
        num_samples: int = 100,
        keep: int = 10,
        num_batches: int = 2,
        ref_margin: float = 0.1,
        seed: int = 2,
    ) -> None:
        if keep < 1 or keep > num_samples:
            raise ConfigError(f"OperationPruning needs 1 <= keep <= num_samples, got {keep} and {num_samples}.")
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ConfigError(f"OperationPruning every_n_epochs must be >= 1 or null, got {every_n_epochs}.")
        self.at_epochs = sorted(int(e) for e in at_epochs)
        self.every_n_epochs = every_n_epochs
        self.num_samples, self.keep, self.num_batches, self.ref_margin = num_samples, keep, num_batches, ref_margin
        self.rng = np.random.default_rng(seed)
        self.records: list[dict[str, Any]] = []

    @property
    def state_key(self) -> str:
        return "OperationPruning"

    @property
    def done(self) -> set[int]:
        return {r["epoch"] for r in self.records}

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            module = supernet_of(pl_module, "OperationPruning")
            check_sample_size("num_samples", self.num_samples, module, "OperationPruning")

    def scheduled(self, epoch: int, module: SupernetModule) -> bool:
        """Whether a pruning is due after ``epoch``."""
        search_epoch = epoch - module.warmup_epochs  # 0 for the first search epoch
        every = self.every_n_epochs
        return epoch in self.at_epochs or (every is not None and search_epoch >= 0 and (search_epoch + 1) % every == 0)

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last = trainer.current_epoch - 1  # prunings due after earlier epochs that their checkpoints missed
        for epoch in self.at_epochs:
            if epoch < last and epoch not in self.done:
                self.prune(trainer, pl_module, epoch)
        if last >= 0 and self.scheduled(last, pl_module) and last not in self.done:
            self.prune(trainer, pl_module, last)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.scheduled(trainer.current_epoch, pl_module) and trainer.current_epoch not in self.done:
            self.prune(trainer, pl_module, trainer.current_epoch)

    def prune(self, trainer: L.Trainer, module: SupernetModule, epoch: int) -> dict[str, Any]:
        """Sample, select by HVI and prune; returns the record of what was removed."""
        alive = module.alive_indices()
        paths, objectives = evaluate_sample(module, self.num_samples, self.rng, self.num_batches)
        ranks = pareto_ranks(objectives, DIRECTIONS)
        ref = nadir_reference_point(objectives, DIRECTIONS, margin=self.ref_margin)
        candidates = [int(i) for i in best_first(objectives, ranks) if ranks[i] <= 2]

        def select() -> list[int]:
            return greedy_hvi_selection(objectives, ref, DIRECTIONS, candidates, self.keep)

        chosen = decide_on_rank_zero(trainer, select)  # every rank prunes what rank 0 chose
        used = [set(paths[chosen, layer].tolist()) for layer in range(paths.shape[1])]
        to_prune = [
            (layer, module.supernet.choices[layer][i])
            for layer, ops in enumerate(alive)
            for i in ops
            if i not in used[layer]
        ]
        groups, names = [], []
        for layer, ops in enumerate(alive):
            for i in ops:
                groups.append(np.flatnonzero(paths[:, layer] == i).tolist())
                names.append(f"{layer}:{module.supernet.choices[layer][i]}")
        op_hvi = hypervolume_improvement(objectives, ref, DIRECTIONS, groups=groups)
        params_before = sum(p.numel() for p in module.supernet.parameters())
        freed = module.prune_ops(to_prune)
        record = {
            "epoch": int(epoch),
            "pruned": [[layer, op] for layer, op in to_prune],
            "chosen": [module.arch_string(paths[i]) for i in chosen],
            "reference_point": ref.tolist(),
            "hypervolume_chosen": hypervolume(objectives[chosen], ref, DIRECTIONS),
            "op_hvi": dict(zip(names, op_hvi.round(8).tolist())),
            "params_before": int(params_before),
            "params_after": int(params_before - freed),
        }
        self.records.append(record)
        module.log_dict(
            {"prune/ops_removed": float(len(to_prune)), "prune/params": float(params_before - freed)},
            on_step=False,
            on_epoch=True,
        )
        return record

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "records": self.records}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng" in state_dict:
            self.rng.bit_generator.state = state_dict["rng"]
        self.records = list(state_dict.get("records", []))
