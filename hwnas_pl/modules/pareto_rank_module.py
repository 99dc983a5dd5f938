"""HW-PR-NAS's Pareto-score predictor as a LightningModule (thesis §3.2, Algorithm 1).

Each training batch (18 architectures by default) is ranked per device by non-dominated sorting of its true
objectives (recomputed per batch, Eq. 3.3–3.5); every device head is trained with the listwise loss of Eq. 3.6–3.7
(:func:`~hwnas_pl.nn.listwise_loss.listwise_pareto_loss`) and the losses are summed (one shared encoder). The
first ``pretrain_epochs`` train the encoder alone through a token decoder (cross-entropy reconstruction of the
architecture's token string, the thesis's encoder pre-training). Validation ranks the whole validation split at
once and logs, per device and averaged, the Kendall tau of the score against the true Pareto rank
(``val/tau``) and against the first objective (``val/tau_first``).

The network is built in :meth:`configure_model` from the DataModule's encoding statistics, which the checkpoint
keeps (a loaded checkpoint rebuilds it before its weights load). For a new device or objective,
``init_from`` loads a checkpoint's encoder (and the heads of devices with the same name) and ``freeze_encoder``
trains the heads only (thesis: 5 epochs for a third objective).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import OptimizerCallable

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.nn.architecture_encoders import PARTS, ParetoScoreNet, TokenDecoder
from hwnas_pl.nn.listwise_loss import listwise_pareto_loss
from hwnas_pl.pareto import kendall_tau, pareto_ranks
from hwnas_pl.rng import rng_states, set_rng_states


class ParetoRankModule(L.LightningModule):
    """Train :class:`~hwnas_pl.nn.architecture_encoders.ParetoScoreNet` on an ``ArchitectureDataModule``.

    Args:
        parts: encoder parts (``af``, ``gcn``, ``lstm``).
        loss_on: ``"scores"`` (ListMLE on the logits) or ``"softmax"`` (Eq. 3.6 as printed).
        pretrain_epochs: epochs of decoder-only encoder pre-training first.
        init_from: a checkpoint of this module whose encoder (and same-named heads) initialise this one.
        freeze_encoder: train the heads only.
        optimizer: optimizer factory (default Adam, lr 1e-3).
    """

    def __init__(
        self,
        parts: Sequence[str] = PARTS,
        loss_on: str = "scores",
        pretrain_epochs: int = 0,
        init_from: str | None = None,
        freeze_encoder: bool = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        self.parts, self.loss_on, self.pretrain_epochs = list(parts), loss_on, pretrain_epochs
        self.init_from, self.freeze_encoder, self.optimizer_factory = init_from, freeze_encoder, optimizer
        self.net: ParetoScoreNet | None = None
        self.decoder: TokenDecoder | None = None
        self.stats: dict[str, Any] | None = None
        self.devices: dict[str, dict[str, str]] = {}
        self.metric_names: list[str] = []
        self._val: list[tuple[dict[str, torch.Tensor], torch.Tensor]] = []

    # ------------------------------------------------------------------ the network
    def build(self, stats: dict[str, Any], devices: dict[str, dict[str, str]], metrics: list[str]) -> None:
        self.stats, self.devices, self.metric_names = stats, devices, metrics
        self.net = ParetoScoreNet(stats, list(devices), self.parts)
        self.decoder = TokenDecoder(self.net.encoder.out_features, len(stats["vocabulary"]) + 2, stats["length"])

    def configure_model(self) -> None:
        if self.net is not None or self._trainer is None:  # loading a checkpoint: on_load_checkpoint builds it
            return
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "stats"):
            raise ConfigError("ParetoRankModule trains on an ArchitectureDataModule (data: class_path "
                              "hwnas_pl.datamodules.ArchitectureDataModule).")  # fmt: skip
        dm.setup("fit")
        self.build(dm.stats, dm.devices, dm.metrics)
        if self.init_from:
            self._initialise_from(Path(self.init_from))
        if self.freeze_encoder:
            self.net.encoder.requires_grad_(False)  # type: ignore[union-attr]

    def _initialise_from(self, path: Path) -> None:
        if not path.is_file():
            raise UserInputError(f"init_from '{path}' does not exist; expected a ParetoRankModule checkpoint.")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if ckpt.get("hwprnas", {}).get("stats") != self.stats:
            raise UserInputError(
                f"init_from '{path}' encodes architectures differently (another space, sample or encoding); "
                "expected a checkpoint trained on the same encoding statistics."
            )
        state = ckpt["state_dict"]
        own = self.state_dict()
        keep = {k: v for k, v in state.items() if k.startswith("net.encoder.") or k.startswith("decoder.")}
        old_devices = list(ckpt["hwprnas"]["devices"])
        for i, device in enumerate(self.devices):
            if device in old_devices:
                j = old_devices.index(device)
                keep.update({k.replace(f"net.heads.{j}.", f"net.heads.{i}."): v for k, v in state.items()
                             if k.startswith(f"net.heads.{j}.")})  # fmt: skip
        self.load_state_dict({**own, **keep})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hwprnas"] = {"stats": self.stats, "devices": self.devices, "metrics": self.metric_names}
        checkpoint["rng_states"] = rng_states()  # a resumed run draws the same dropout masks

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("hwprnas")
        if meta is None:
            raise UserInputError("The checkpoint was not written by ParetoRankModule (no encoding statistics).")
        if self.net is None:
            self.build(meta["stats"], meta["devices"], meta["metrics"])
        self._resumed_rng_states = checkpoint.get("rng_states")

    def on_train_start(self) -> None:
        pending = getattr(self, "_resumed_rng_states", None)
        if pending is not None:
            set_rng_states(pending)
            self._resumed_rng_states = None

    # ------------------------------------------------------------------ steps
    def device_ranks(self, objectives: torch.Tensor, device: str) -> torch.Tensor:
        objectives_of = self.devices[device]
        columns = [self.metric_names.index(m) for m in objectives_of]
        F = objectives[:, columns].detach().cpu().numpy()
        return torch.as_tensor(pareto_ranks(F, list(objectives_of.values())), device=objectives.device)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        views, objectives = batch
        if self.current_epoch < self.pretrain_epochs:
            loss = self.decoder.loss(self.net.encoder(views), views["tokens"])  # type: ignore[union-attr]
            self.log("train/decoder_loss", loss, on_step=False, on_epoch=True, batch_size=len(objectives))
        else:
            encoding = self.net.encoder(views)  # type: ignore[union-attr]
            loss = sum(
                listwise_pareto_loss(head(encoding).squeeze(1), self.device_ranks(objectives, d), self.loss_on)
                for d, head in zip(self.devices, self.net.heads)  # type: ignore[union-attr]
            )
            self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(objectives))
        if not torch.isfinite(loss):
            raise UserInputError(f"The Pareto-rank loss became {float(loss)} at epoch {self.current_epoch}, step "
                                 f"{self.global_step}; lower the learning rate.")  # fmt: skip
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._val.append(batch)

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        views = {k: torch.cat([b[0][k] for b in self._val]) for k in self._val[0][0]}
        objectives = torch.cat([b[1] for b in self._val])
        self._val = []
        taus, firsts = [], []
        with torch.no_grad():
            for device in self.devices:
                score = self.net(views, device).cpu().numpy()  # type: ignore[union-attr]
                ranks = self.device_ranks(objectives, device).cpu().numpy()
                first, direction = next(iter(self.devices[device].items()))
                value = objectives[:, self.metric_names.index(first)].cpu().numpy()
                tau = kendall_tau(score, -ranks) if len(score) > 2 else float("nan")
                tau_first = kendall_tau(score, value if direction == "max" else -value) if len(score) > 2 else np.nan
                self.log(f"val/tau_{device}", tau, batch_size=len(score))
                taus.append(tau)
                firsts.append(tau_first)
        self.log("val/tau", float(np.mean(taus)), prog_bar=True, batch_size=len(objectives))
        self.log("val/tau_first", float(np.mean(firsts)), batch_size=len(objectives))

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        return self.optimizer_factory(params)
