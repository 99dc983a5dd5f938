"""PRP-NAS α updates from the Pareto ranks of sampled sub-networks (thesis §3.3, Algorithm 2 step 2b, Eq. 3.9)."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import OptimizerCallable
from typing_extensions import override

from hwnas_pl.callbacks.prpnas_sampling import DIRECTIONS, best_first, check_sample_size, evaluate_sample, supernet_of
from hwnas_pl.distributed import decide_on_rank_zero
from hwnas_pl.errors import ConfigError
from hwnas_pl.modules.supernet_module import SupernetModule
from hwnas_pl.pareto import kendall_tau, pareto_ranks
from hwnas_pl.prpnas import alpha_hinge_loss, listwise_rank_loss, op_frequency, path_scores


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
            check_sample_size("n", self.n, supernet_of(pl_module, "ParetoRankAlphaUpdate"), "ParetoRankAlphaUpdate")

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = supernet_of(pl_module, "ParetoRankAlphaUpdate")
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
