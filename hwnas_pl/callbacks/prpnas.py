"""PRP-NAS callbacks (thesis §3.3, Algorithm 2): Pareto-rank α updates, operation pruning, and the export.

Each callback draws sub-networks with its own seeded generator (same state on every rank), estimates their accuracy
with the supernet's shared weights on held-out batches (correct counts summed over ranks) and their cost on rank 0
(broadcast), so every rank takes the same decision. Their state (generator, α optimiser, what was pruned when) is
saved in the checkpoint.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.cli import OptimizerCallable
from typing_extensions import override

from hwnas_pl.distributed import decide_on_rank_zero, write_on_rank_zero
from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.base import CostModelFactory, build_cost_model
from hwnas_pl.modules.supernet_module import SupernetModule
from hwnas_pl.pareto import hypervolume, hypervolume_improvement, kendall_tau, nadir_reference_point, pareto_ranks
from hwnas_pl.prpnas import (
    alpha_hinge_loss,
    greedy_hvi_selection,
    listwise_rank_loss,
    op_frequency,
    path_scores,
    subspace_size,
)

DIRECTIONS = ("max", "min")  # (accuracy, cost)


def _supernet(pl_module: L.LightningModule, owner: str) -> SupernetModule:
    if not isinstance(pl_module, SupernetModule):
        raise ConfigError(f"{owner} works on a SupernetModule, got {type(pl_module).__name__}.")
    return pl_module


def _check_n(name: str, n: int, module: SupernetModule, owner: str) -> None:
    size = subspace_size(module.alive_indices())
    if n < 1 or n > size:
        raise ConfigError(
            f"{owner} {name}={n} sub-networks, but the {module.space.name} supernet has {size} distinct ones; "
            f"expected 1 <= {name} <= {size}."
        )


def evaluate_sample(
    module: SupernetModule, n: int, rng: np.random.Generator, num_batches: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct sub-networks and their (estimated accuracy, cost) objectives, ``(n, L)`` and ``(n, 2)``.

    After a pruning the alive space may hold fewer than ``n``: then every one of them is evaluated (the callbacks
    refuse an ``n`` beyond the unpruned space when training starts).
    """
    paths = module.sample_subnets(min(n, subspace_size(module.alive_indices())), rng)
    acc = module.estimate_accuracy(paths, module.heldout_batches(num_batches))
    return paths, np.stack([acc, module.costs(paths)], axis=1)


def best_first(objectives: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Indices of the sample sorted by Pareto rank, then by accuracy (best first)."""
    return np.lexsort((-objectives[:, 0], ranks))


class ParetoRankAlphaUpdate(L.Callback):
    r"""Update α from the Pareto ranks of sampled sub-networks (thesis §3.3, Algorithm 2 step 2b, Eq. 3.9).

    Once when the search phase starts, then every ``every_n_steps`` training steps or at the end of every
    ``every_n_epochs``-th epoch of it: sample ``n`` sub-networks, estimate their accuracy on ``num_batches``
    held-out batches and their cost, rank them by Pareto dominance (accuracy up, cost down) and take one α step on

    .. math:: L_\alpha = L_{hinge}(g_{top\text{-}N}, m) + \lambda\, L_{list}(P_s, \mathrm{rank})

    (:func:`~hwnas_pl.prpnas.alpha_hinge_loss`, :func:`~hwnas_pl.prpnas.listwise_rank_loss`). How the thesis
    combines the two losses is unstated [AMBIG]: here a weighted sum with ``list_weight`` = λ. The top-N are the
    first ``top_n`` sub-networks by (Pareto rank, accuracy).

    Logs ``alpha/hinge``, ``alpha/listwise``, ``alpha/front_size`` and ``alpha/score_rank_tau`` (Kendall tau-b of
    P_s against the negated Pareto rank; 1 when α orders the sample as the Pareto ranks do).

    Args:
        n: sub-networks sampled per update (50 in Table 3.8).
        top_n: N, how many of the best-ranked sub-networks give the op counts.
        margin: m of the hinge loss (0.1 in the thesis).
        list_weight: λ, weight of the listwise loss.
        temperature: T of the listwise target distribution.
        every_n_steps: update every this many training steps; ``None`` to update per epoch instead.
        every_n_epochs: update at the end of every this many epochs (when ``every_n_steps`` is ``None``).
        num_batches: held-out batches per accuracy estimate.
        optimizer: α's optimiser factory (default Adam, lr 0.05, betas (0.5, 0.999)).
        seed: seed of the sub-network sampler.
    """

    def __init__(
        self,
        n: int = 50,
        top_n: int = 10,
        margin: float = 0.1,
        list_weight: float = 1.0,
        temperature: float = 1.0,
        every_n_steps: int | None = None,
        every_n_epochs: int = 1,
        num_batches: int = 2,
        optimizer: OptimizerCallable | None = None,
        seed: int = 1,
    ) -> None:
        if top_n < 1 or top_n > n:
            raise ConfigError(f"ParetoRankAlphaUpdate needs 1 <= top_n <= n, got top_n={top_n} and n={n}.")
        if every_n_steps is not None and every_n_steps < 1 or every_n_epochs < 1 or num_batches < 1:
            raise ConfigError("ParetoRankAlphaUpdate every_n_steps, every_n_epochs and num_batches must be >= 1.")
        if temperature <= 0 or margin < 0:
            raise ConfigError(
                f"ParetoRankAlphaUpdate needs temperature > 0 and margin >= 0, got {temperature}, {margin}."
            )
        self.n, self.top_n, self.margin = n, top_n, margin
        self.list_weight, self.temperature = list_weight, temperature
        self.every_n_steps, self.every_n_epochs, self.num_batches = every_n_steps, every_n_epochs, num_batches
        self.optimizer_factory = optimizer
        self.rng = np.random.default_rng(seed)
        self.optimizer: torch.optim.Optimizer | None = None
        self.updates = 0
        self.history: list[dict[str, Any]] = []  # per update: step, front (arch strings), losses
        self._pending_optimizer_state: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return "ParetoRankAlphaUpdate"

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            _check_n("n", self.n, _supernet(pl_module, "ParetoRankAlphaUpdate"), "ParetoRankAlphaUpdate")

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = _supernet(pl_module, "ParetoRankAlphaUpdate")
        if self.optimizer_factory is None:
            self.optimizer = torch.optim.Adam([module.alpha], lr=0.05, betas=(0.5, 0.999))
        else:
            self.optimizer = self.optimizer_factory([module.alpha])
        if self._pending_optimizer_state is not None:
            self.optimizer.load_state_dict(self._pending_optimizer_state)
            self._pending_optimizer_state = None

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # α from the warmed-up supernet before the first search step: zero α would tie, and argmax would then
        # train every layer's first op (``none``) for a whole epoch
        if pl_module.phase == "search" and self.updates == 0:
            self.update(trainer, pl_module)

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and pl_module.phase == "search" and trainer.global_step % self.every_n_steps == 0:
            self.update(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_steps is None and pl_module.phase == "search":
            if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
                self.update(trainer, pl_module)

    def update(self, trainer: L.Trainer, module: SupernetModule) -> dict[str, float]:
        """One α step from a fresh sample; returns the logged values."""
        paths, objectives = evaluate_sample(module, self.n, self.rng, self.num_batches)
        ranks = pareto_ranks(objectives, DIRECTIONS)
        top = paths[best_first(objectives, ranks)[: self.top_n]]
        with torch.enable_grad():
            probs = module.alpha_probs()
            hinge = alpha_hinge_loss(probs, op_frequency(top, probs.shape[1]), module.alive_mask, self.margin)
            scores = path_scores(probs, paths)
            listwise = listwise_rank_loss(scores, ranks, self.temperature)
            loss = hinge + self.list_weight * listwise
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if trainer.world_size > 1:  # identical inputs give identical steps; rank 0's α makes it bit-exact
            module.alpha.data.copy_(decide_on_rank_zero(trainer, lambda: module.alpha.data.cpu()))
        self.updates += 1
        values = {
            "alpha/hinge": float(hinge),
            "alpha/listwise": float(listwise),
            "alpha/front_size": float((ranks == 1).sum()),
            "alpha/score_rank_tau": float(np.nan_to_num(kendall_tau(scores.detach().cpu().numpy(), -ranks))),
        }
        self.history.append(
            {
                "step": int(trainer.global_step),
                "epoch": int(trainer.current_epoch),
                "front": [module.arch_string(p) for p in paths[ranks == 1]],
                **values,
            }
        )
        module.log_dict(values, on_step=False, on_epoch=True)
        return values

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "updates": self.updates,
            "history": self.history,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else self._pending_optimizer_state,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # keys are read with defaults, so checkpoints of older versions (and of newer keys' absence) load
        if "rng" in state_dict:
            self.rng.bit_generator.state = state_dict["rng"]
        self.updates = int(state_dict.get("updates", 0))
        self.history = list(state_dict.get("history", []))
        self._pending_optimizer_state = state_dict.get("optimizer")


class OperationPruning(L.Callback):
    r"""Delete the ops that no Pareto-selected sub-network uses (thesis §3.3, Algorithm 2 step 3, Eq. 3.10).

    At the end of each epoch in ``at_epochs`` (0-based): sample ``num_samples`` sub-networks, keep those of Pareto
    ranks 1–2, choose ``keep`` of them by greedy hypervolume improvement (:func:`~hwnas_pl.prpnas.greedy_hvi_selection`)
    and prune, in every layer, each op none of the chosen uses. The reference point is the nadir of the pre-sampled
    sub-networks (their lowest accuracy and highest cost, pushed out by ``ref_margin`` of the range): the thesis's
    "pre-sampled low-accuracy, high-latency sub-network" [AMBIG: which one is not said].

    The per-op HVI of Eq. 3.10, HV(P) − HV(P ∖ S_op) over the sub-networks S_op that use the op, is reported with
    each pruning in :attr:`records` (and the checkpoint). A pruning missed because a run stopped between the epoch
    end and its checkpoint is done at the start of the next epoch.

    Args:
        at_epochs: epochs after which to prune.
        num_samples: sub-networks sampled per pruning.
        keep: n, sub-networks chosen by hypervolume improvement.
        num_batches: held-out batches per accuracy estimate.
        ref_margin: how far beyond the sample's worst point the reference point lies, as a share of each range.
        seed: seed of the sampler.
    """

    def __init__(
        self,
        at_epochs: Sequence[int] = (30,),
        num_samples: int = 100,
        keep: int = 10,
        num_batches: int = 2,
        ref_margin: float = 0.1,
        seed: int = 2,
    ) -> None:
        if keep < 1 or keep > num_samples:
            raise ConfigError(f"OperationPruning needs 1 <= keep <= num_samples, got {keep} and {num_samples}.")
        self.at_epochs = sorted(int(e) for e in at_epochs)
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
            module = _supernet(pl_module, "OperationPruning")
            _check_n("num_samples", self.num_samples, module, "OperationPruning")

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for epoch in self.at_epochs:
            if epoch < trainer.current_epoch and epoch not in self.done:
                self.prune(trainer, pl_module, epoch)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch in self.at_epochs and trainer.current_epoch not in self.done:
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


class SupernetExport(L.Callback):
    """Write the searched architectures, the Pareto set and a retraining config when training ends (thesis §3.3).

    Files in ``output_dir`` (default ``<trainer.default_root_dir>/export``):

    - ``architecture.json``: the argmax(α) architecture, α per layer (normalised), and every path whose ops all
      have α within ``threshold`` of their layer's largest (at most ``max_paths``; the thesis keeps several paths
      where α values are close).
    - ``pareto_set.json``: the non-dominated sub-networks of a fresh sample of ``num_samples`` (plus the argmax
      path), each as ``{arch, est_acc, <cost metric>}`` in the space's string format.
    - ``retrain.yaml``: ``hwnas fit --config retrain.yaml`` trains the argmax architecture from scratch with the
      task's module (:class:`~hwnas_pl.modules.ClassifierModule` for classification) with the same data and
      optimiser.
    - ``ranking.json`` (with ``reference``): Kendall tau-b between the supernet's and the reference's ranking of
      the sample, for accuracy and for Pareto rank (the thesis's ranking-quality measure).

    Args:
        output_dir: where to write.
        num_samples: sub-networks sampled for the Pareto set and the ranking (capped at the alive space's size).
        num_batches: held-out batches per accuracy estimate.
        threshold: α (normalised) within this of the layer's largest keeps an op in the exported paths.
        max_paths: most paths written to ``architecture.json``.
        reference: a cost model giving the true accuracy of a sub-network (e.g. the NAS-Bench-201 table, or a
            CSV of independently trained sub-networks through ``TableCostModel``), called with the space.
        reference_metric: the reference's accuracy metric (default: its first).
        retrain_epochs: ``trainer.max_epochs`` in ``retrain.yaml``.
        seed: seed of the sampler.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        num_samples: int = 100,
        num_batches: int = 4,
        threshold: float = 0.05,
        max_paths: int = 64,
        reference: CostModelFactory | None = None,
        reference_metric: str | None = None,
        retrain_epochs: int = 200,
        seed: int = 3,
    ) -> None:
        self.output_dir = output_dir
        self.num_samples, self.num_batches = num_samples, num_batches
        self.threshold, self.max_paths = threshold, max_paths
        self.reference_factory, self.reference_metric = reference, reference_metric
        self.retrain_epochs = retrain_epochs
        self.seed = seed
        self.results: dict[str, Any] = {}

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.export(trainer, _supernet(pl_module, "SupernetExport"))

    def export(self, trainer: L.Trainer, module: SupernetModule) -> Path:
        """Evaluate and write the files; returns the output folder."""
        out = Path(self.output_dir) if self.output_dir else Path(trainer.default_root_dir) / "export"
        rng = np.random.default_rng(self.seed)
        paths, objectives = evaluate_sample(module, self.num_samples, rng, self.num_batches)
        best = module.argmax_path()
        if not (paths == best).all(axis=1).any():
            paths = np.vstack([paths, best])
            acc = module.estimate_accuracy(best[None], module.heldout_batches(self.num_batches))
            objectives = np.vstack([objectives, [acc[0], module.costs(best[None])[0]]])
        ranks = pareto_ranks(objectives, DIRECTIONS)
        metric = module.cost_metric
        architecture = self._architecture(module, best, objectives[(paths == best).all(axis=1)][0])
        pareto_set = [
            {"arch": module.arch_string(paths[i]), "est_acc": float(objectives[i, 0]), metric: float(objectives[i, 1])}
            for i in np.flatnonzero(ranks == 1)[np.argsort(objectives[ranks == 1, 1])]
        ]
        ranking = self._ranking(module, paths, objectives, ranks) if self.reference_factory is not None else None
        self.results = {"architecture": architecture, "pareto_set": pareto_set, "ranking": ranking}

        def write() -> None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "architecture.json").write_text(json.dumps(architecture, indent=1))
            (out / "pareto_set.json").write_text(json.dumps(pareto_set, indent=1))
            (out / "retrain.yaml").write_text(self._retrain_config(trainer, module, architecture["arch"], out))
            if ranking is not None:
                (out / "ranking.json").write_text(json.dumps(ranking, indent=1))
            summary = {"export/pareto_size": len(pareto_set), "export/argmax_est_acc": architecture["est_acc"]}
            if ranking is not None:
                summary.update({f"export/{k}": v for k, v in ranking.items() if isinstance(v, float)})
            for logger in trainer.loggers:
                logger.log_metrics(summary, step=trainer.global_step)

        write_on_rank_zero(trainer, write)
        return out

    def _architecture(self, module: SupernetModule, best: np.ndarray, objectives: np.ndarray) -> dict[str, Any]:
        probs = module.alpha_probs().detach().cpu().numpy()
        alive = module.alive_indices()
        near = [
            [i for i in ops if probs[layer, i] >= probs[layer].max() - self.threshold]
            for layer, ops in enumerate(alive)
        ]
        ordered = [[int(best[layer]), *(i for i in ops if i != best[layer])] for layer, ops in enumerate(near)]
        paths = list(itertools.islice(itertools.product(*ordered), self.max_paths))  # the argmax path first
        return {
            "arch": module.arch_string(best),
            "est_acc": float(objectives[0]),
            module.cost_metric: float(objectives[1]),
            "alpha": {
                f"{layer}": {module.supernet.choices[layer][i]: round(float(probs[layer, i]), 6) for i in ops}
                for layer, ops in enumerate(alive)
            },
            "threshold": self.threshold,
            "paths": [module.arch_string(p) for p in paths],
            "pruned": [[layer, op] for layer, op in module.pruned],
        }

    def _ranking(
        self, module: SupernetModule, paths: np.ndarray, objectives: np.ndarray, est_ranks: np.ndarray
    ) -> dict[str, Any]:
        reference = build_cost_model(self.reference_factory, module.space, module.input_shape, module.num_classes)
        metric = self.reference_metric or reference.metrics[0]
        archs = [module.space.decode(p) for p in paths]
        true_acc = reference.evaluate(archs)[metric]
        true_ranks = pareto_ranks(np.stack([true_acc, objectives[:, 1]], axis=1), DIRECTIONS)
        return {
            "n": len(paths),
            "reference_metric": metric,
            "kendall_tau_accuracy": kendall_tau(objectives[:, 0], true_acc),
            "kendall_tau_pareto_rank": kendall_tau(est_ranks, true_ranks),
            "archs": [module.arch_string(p) for p in paths],
            "est_acc": objectives[:, 0].tolist(),
            "true_acc": np.asarray(true_acc, dtype=float).tolist(),
            module.cost_metric: objectives[:, 1].tolist(),
        }

    def _retrain_config(self, trainer: L.Trainer, module: SupernetModule, arch: str, out: Path) -> str:
        datamodule = trainer.datamodule
        data = None
        if datamodule is not None:
            data = {"class_path": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"}
            hparams = dict(getattr(datamodule, "hparams", {}))
            data["init_args"] = {k: v for k, v in hparams.items() if not k.startswith("_")}
        backbone = {"class_path": "hwnas_pl.spaces.ArchNetwork",
                    "init_args": {"space": module.space.config(), "arch": arch}}  # fmt: skip
        model = module.task.retrain_model(backbone)  # the task's own module: classifier, segmentation, regression
        optimizer = module.hparams.get("optimizer")
        if isinstance(optimizer, dict):
            model["init_args"]["optimizer"] = optimizer
        config = {
            "seed_everything": 42,
            "trainer": {
                "default_root_dir": str(out / "retrain"),
                "max_epochs": self.retrain_epochs,
                "callbacks": [
                    {
                        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                        "init_args": {"dirpath": str(out / "retrain" / "checkpoints"), "filename": "last"},
                    }
                ],
            },
            "model": model,
        }
        if data is not None:
            config["data"] = data
        header = (
            f"# Retrain the PRP-NAS argmax architecture from scratch:\n#   hwnas fit --config {out / 'retrain.yaml'}\n"
        )
        return header + yaml.safe_dump(config, sort_keys=False)
