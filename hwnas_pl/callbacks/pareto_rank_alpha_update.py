"""PRP-NAS α updates from the Pareto ranks of sampled sub-networks (thesis §3.3, Algorithm 2 step 2b, Eq. 3.9)."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from hwnas_pl.callbacks.prpnas_sampling import (
    DIRECTIONS,
    Reference,
    best_first,
    check_sample_size,
    evaluate_sample,
    supernet_of,
)
from hwnas_pl.distributed import decide_on_rank_zero
from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.base import CostModelFactory
from hwnas_pl.modules.supernet_module import SupernetModule
from hwnas_pl.pareto import kendall_tau, pareto_ranks
from hwnas_pl.prpnas import alpha_hinge_loss, listwise_rank_loss, op_frequency, path_scores


class ParetoRankAlphaUpdate(L.Callback):
    r"""Update α from the Pareto ranks of sampled sub-networks (thesis §3.3, Algorithm 2 step 2b, Eq. 3.9).

    Once when the search phase starts, then every ``every_n_steps`` training steps or at the end of every
    ``every_n_epochs``-th epoch of it: sample ``n`` sub-networks, rank them by Pareto dominance (accuracy up, cost
    down) and take one α step on

    .. math:: L_\alpha = L_{hinge}(g, \hat g, m) + \lambda\, L_{list}(P_s, \mathrm{rank})

    (:func:`~hwnas_pl.prpnas.alpha_hinge_loss`, :func:`~hwnas_pl.prpnas.listwise_rank_loss`). The ground truth
    (Algorithm 2 step 1) is the accuracy of a ``reference`` (a benchmark table; the sample is then drawn from the
    architectures it holds) or, without one, the supernet's own estimate on ``num_batches`` held-out batches; the
    cost is the module's cost model. ĝ counts ops among the first ``top_n`` sub-networks by (true Pareto rank,
    accuracy), g among the first ``top_n`` by α's score :math:`P_s = \sum_{o \in s} \hat\alpha_o`. How the thesis
    combines the two losses is unstated [AMBIG]: here a weighted sum with ``list_weight`` = λ.

    α's default optimiser is plain SGD: Adam's first step moves every entry by ±lr whatever its gradient, so the
    favoured ops of a layer tie to ~1e-8 and argmax would pick among them by op order; SGD's first step is
    proportional to the gradient.

    Logs ``alpha/hinge``, ``alpha/listwise``, ``alpha/front_size`` and ``alpha/score_rank_tau`` (Kendall tau-b of
    P_s against the negated true Pareto rank; 1 when α orders the sample as the Pareto ranks do).

    Args:
        n: sub-networks sampled per update (50 in Table 3.8).
        top_n: N, how many of the best-ranked sub-networks give the op counts.
        margin: m of the hinge loss (0.1 in the thesis).
        list_weight: λ, weight of the listwise loss.
        temperature: T of the listwise target distribution.
        every_n_steps: update every this many training steps; ``None`` to update per epoch instead.
        every_n_epochs: update at the end of every this many epochs (when ``every_n_steps`` is ``None``).
        num_batches: held-out batches per accuracy estimate.
        optimizer: α's optimiser factory (default SGD, lr 2.0, momentum 0.9).
        reference: ground-truth accuracy, a cost model called with the space (e.g. a ``TableCostModel`` of
            independently trained cells); default: the supernet's estimate.
        reference_metric: the reference's accuracy metric (default: its first).
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
        reference: CostModelFactory | None = None,
        reference_metric: str | None = None,
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
        self.reference_factory, self.reference_metric = reference, reference_metric
        self.reference: Reference | None = None
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
            module = supernet_of(pl_module, "ParetoRankAlphaUpdate")
            if self.reference_factory is not None:
                self.reference = Reference(self.reference_factory, self.reference_metric, module)
            else:
                check_sample_size("n", self.n, module, "ParetoRankAlphaUpdate")

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = supernet_of(pl_module, "ParetoRankAlphaUpdate")
        if self.optimizer_factory is None:
            self.optimizer = torch.optim.SGD([module.alpha], lr=2.0, momentum=0.9)
        else:
            self.optimizer = self.optimizer_factory([module.alpha])
        if self._pending_optimizer_state is not None:
            saved = self._pending_optimizer_state.get("param_groups", [{}])
            if set(self.optimizer.param_groups[0]) - {"params"} <= set(saved[0]):
                self.optimizer.load_state_dict(self._pending_optimizer_state)
            else:  # a checkpoint of another α optimiser (Adam, the default before): its state does not apply
                rank_zero_warn(
                    "ParetoRankAlphaUpdate: the checkpoint's α optimiser state is not a "
                    f"{type(self.optimizer).__name__}'s; α's optimiser starts afresh (α itself is restored)."
                )
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
        if self.reference is not None:
            paths = self.reference.sample(module, self.n, self.rng)
            objectives = np.stack([self.reference.accuracy(module, paths), module.costs(paths)], axis=1)
        else:
            paths, objectives = evaluate_sample(module, self.n, self.rng, self.num_batches)
        ranks = pareto_ranks(objectives, DIRECTIONS)
        top_n = min(self.top_n, len(paths))
        true_top = paths[best_first(objectives, ranks)[:top_n]]
        with torch.enable_grad():
            probs = module.alpha_probs()
            scores = path_scores(probs, paths)
            predicted_top = paths[np.argsort(-scores.detach().cpu().numpy(), kind="stable")[:top_n]]
            g = op_frequency(predicted_top, probs.shape[1])
            g_true = op_frequency(true_top, probs.shape[1])
            hinge = alpha_hinge_loss(probs, g, g_true, module.alive_mask, self.margin)
            listwise = listwise_rank_loss(scores, ranks, self.temperature)
            loss = hinge + self.list_weight * listwise
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if trainer.world_size > 1:  # identical inputs give identical steps; rank 0's α makes it bit-exact
            with torch.no_grad():  # in place on the parameter: its version moves, so the cached argmax path follows
                module.alpha.copy_(decide_on_rank_zero(trainer, lambda: module.alpha.detach().cpu()))
        self.updates += 1
        values = {
            "alpha/hinge": hinge.item(),
            "alpha/listwise": listwise.item(),
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
