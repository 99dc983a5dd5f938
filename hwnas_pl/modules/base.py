"""Behaviour every LightningModule of the package shares: clear checkpoint and NaN-loss errors."""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
from typing_extensions import override

from hwnas_pl.checkpoint import check_state_dict_matches
from hwnas_pl.errors import UserInputError


class NonFiniteLossError(UserInputError, FloatingPointError):
    """The training loss became NaN or infinite."""


def _is_plain(value: Any) -> bool:
    """Whether ``value`` is data that ``torch.load(weights_only=True)`` reads back (no classes or functions)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


class HWNASModule(L.LightningModule):
    """Base of the package's LightningModules.

    - Loading a checkpoint written by another model fails with one sentence (see
      :func:`hwnas_pl.checkpoint.check_state_dict_matches`) unless ``strict_loading`` is off.
    - :meth:`check_finite` stops training at the first NaN/inf loss with the epoch and step.
    - :meth:`save_plain_hyperparameters` keeps checkpoints loadable with ``torch.load(weights_only=True)``.
    """

    def save_plain_hyperparameters(self, ignore: list[str] | None = None) -> None:
        """``save_hyperparameters()`` of the caller's ``__init__`` arguments, keeping only plain values.

        Under the ``hwnas`` CLI every argument is plain config (class_path/init_args dicts), so everything is kept
        and ``load_from_checkpoint`` rebuilds the model. Objects given from Python (a backbone factory, an
        optimizer class) are dropped: pass them again to ``load_from_checkpoint``.
        """
        self.save_hyperparameters(ignore=ignore, frame=inspect.currentframe().f_back)
        for store in (self._hparams, self._hparams_initial):
            for key in [k for k, v in store.items() if not _is_plain(v)]:
                del store[key]

    def checkpoint_source(self) -> str:
        """How error messages name the checkpoint being loaded (its path when the Trainer knows it)."""
        trainer = self._trainer
        return f"Checkpoint '{trainer.ckpt_path}'" if trainer is not None and trainer.ckpt_path else "The checkpoint"

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.strict_loading or "state_dict" not in checkpoint:
            return
        source = self.checkpoint_source()
        hparams = checkpoint.get("hyper_parameters") or {}
        writer = hparams.get("_class_path")
        check_state_dict_matches(self, checkpoint["state_dict"], source=source, writer=writer)

    def optimizers_from_factories(self, parameters: Any = None) -> Any:
        """``configure_optimizers`` from ``self.optimizer_factory`` and the optional ``self.scheduler_factory``.

        ``parameters`` default to all of the module's. The scheduler steps every epoch; ``ReduceLROnPlateau``
        monitors ``val/loss``.
        """
        optimizer = self.optimizer_factory(self.parameters() if parameters is None else parameters)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}

    def check_finite(self, loss: torch.Tensor, name: str = "training loss") -> torch.Tensor:
        """Return ``loss`` if finite; otherwise raise :class:`NonFiniteLossError` naming where it happened."""
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                f"The {name} became {loss.detach().float().cpu().item() if loss.numel() == 1 else 'non-finite'} at "
                f"epoch {self.current_epoch}, step {self.global_step}; expected a finite loss (lower the learning "
                "rate, check the inputs for NaN, or set trainer.gradient_clip_val)."
            )
        return loss
