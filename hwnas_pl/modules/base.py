"""The LightningModule every module of the package is: one training/validation/test step over a task.

:class:`HWNASModule` runs the steps; what differs between modules is composed into it:

- a :class:`~hwnas_pl.modules.tasks.Task` (batch unpacking, loss, per-stage metrics, evaluation inference);
- **loss terms** (:class:`~hwnas_pl.nn.loss_terms.LossTerm`), added by config or by a callback, each logged as
  ``train/<name>``: the training loss is ``task loss + Σ weight · term``;
- **model transforms** (:class:`~hwnas_pl.nn.transforms.ModelTransform`) applied to the built network
  (analog tiles, reuse layers, quantization), which follow the training through the module's hooks.

Subclasses build the task and the network and may override :meth:`HWNASModule.training_loss` (a supernet sums
several paths) and :meth:`HWNASModule.evaluation_outputs` (a supernet evaluates its argmax path). Loading a
checkpoint of another model fails with one sentence, and a NaN/inf loss stops training with the epoch and step.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from typing_extensions import override

from hwnas_pl.checkpoint import check_state_dict_matches
from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.modules.tasks import Task
from hwnas_pl.nn.loss_terms import LossTerm
from hwnas_pl.nn.transforms import ModelTransform
from hwnas_pl.rng import rng_states, set_rng_states


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
    """Base of the package's LightningModules (see the module docstring).

    - :meth:`compose` sets the task, the (transformed) network and the loss terms.
    - Loading a checkpoint written by another model fails with one sentence (see
      :func:`hwnas_pl.checkpoint.check_state_dict_matches`) unless ``strict_loading`` is off.
    - :meth:`check_finite` stops training at the first NaN/inf loss with the epoch and step.
    - :meth:`save_plain_hyperparameters` keeps checkpoints loadable with ``torch.load(weights_only=True)``.
    """

    #: how the NaN check names the loss
    loss_name = "training loss"

    # ------------------------------------------------------------------ composition
    def compose(
        self,
        task: Task,
        net: nn.Module,
        loss_terms: Sequence[LossTerm] | None = None,
        transforms: Sequence[ModelTransform] | None = None,
        net_attribute: str = "net",
    ) -> None:
        """Set the task, the network after ``transforms``, and the loss terms.

        The task's metrics become attributes (``val_acc``, ...); ``net_attribute`` names where the network lives
        (``supernet`` for a supernet).
        """
        self.task = task
        for name, metric in task.metrics().items():
            setattr(self, name, metric)
        self.transforms = list(transforms or [])
        for transform in self.transforms:
            net = transform.apply(net)
        setattr(self, net_attribute, net)
        self.loss_terms = nn.ModuleDict()
        for term in loss_terms or []:
            self.add_loss_term(term)

    def add_loss_term(self, term: LossTerm) -> None:
        """Add ``term`` to the training loss (from a config or a callback); logged as ``train/<term.name>``.

        Raises:
            ConfigError: when a term of that name is already there.
        """
        if term.name in self.loss_terms:
            raise ConfigError(f"The module already has a loss term named '{term.name}'; expected unique names.")
        self.loss_terms[term.name] = term
        term.attach(self)

    def transform(self, kind: type) -> Any:
        """The first model transform of class ``kind``, or ``None``."""
        return next((t for t in getattr(self, "transforms", []) if isinstance(t, kind)), None)

    # ------------------------------------------------------------------ the steps
    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss to minimise, outputs the loss terms see, loss to log) of one training batch; default one forward."""
        outputs = self.net(x)
        loss = self.task.loss(outputs, y)
        return loss, outputs, loss

    def evaluation_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The network's outputs for validation, test and prediction (the task's inference, e.g. sliding window)."""
        return self.task.infer(self.net, x)

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = self.task.unpack(batch)
        loss, outputs, logged = self.training_loss(x, y)
        total = loss
        for name, term in self.loss_terms.items():
            value = term(self, batch, outputs)
            self.log(f"train/{name}", value.detach(), on_step=False, on_epoch=True)
            total = total + term.weight * value
        self.check_finite(total, self.loss_name)
        if len(self.loss_terms):
            self.log("train/total_loss", total.detach(), on_step=False, on_epoch=True)
        self.task.update(self, "train", logged, outputs, y)
        return total

    def _evaluation_step(self, batch: Any, stage: str) -> None:
        x, y = self.task.unpack(batch)
        outputs = self.evaluation_outputs(x)
        self.task.update(self, stage, self.task.loss(outputs, y), outputs, y)

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    @override
    def on_validation_epoch_end(self) -> None:
        self.task.epoch_end(self, "val")

    @override
    def on_test_epoch_end(self) -> None:
        self.task.epoch_end(self, "test")

    @override
    def predict_step(self, batch: Any, batch_idx: int) -> Any:
        """The task's prediction (class probabilities, class maps, values); batches need no labels."""
        return self.task.predict(self.evaluation_outputs(self.task.predict_inputs(batch)))

    @override
    def configure_optimizers(self) -> Any:
        return self.optimizers_from_factories()

    # ------------------------------------------------------------------ transforms follow the training
    def _call_transforms(self, hook: str, *args: Any) -> None:
        for transform in getattr(self, "transforms", []):
            getattr(transform, hook)(self, *args)

    @override
    def on_fit_start(self) -> None:
        self._call_transforms("on_fit_start")

    @override
    def on_train_epoch_start(self) -> None:
        self._call_transforms("on_train_epoch_start")

    @override
    def on_validation_start(self) -> None:
        self._call_transforms("on_validation_start")

    @override
    def on_test_start(self) -> None:
        self._call_transforms("on_test_start")

    @override
    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self._call_transforms("after_optimizer_step", optimizer)

    @override
    def on_train_start(self) -> None:
        # a resumed run continues the global generators where the checkpointed run left them (after the sanity
        # check and data setup, which draw from them), so that epochs after an epoch-boundary resume are the ones
        # the uninterrupted run trains: the same data order, dropout and analog noise
        pending = getattr(self, "_resumed_rng_states", None)
        if pending is not None:
            set_rng_states(pending)
            self._resumed_rng_states = None

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = rng_states()
        self._call_transforms("on_save_checkpoint", checkpoint)

    # ------------------------------------------------------------------ checkpoints and checks
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
        if self.strict_loading and "state_dict" in checkpoint:
            hparams = checkpoint.get("hyper_parameters") or {}
            writer = hparams.get("_class_path")
            check_state_dict_matches(self, checkpoint["state_dict"], source=self.checkpoint_source(), writer=writer)
        self._resumed_rng_states = checkpoint.get("rng_states")  # restored when training starts (on_train_start)
        self._call_transforms("on_load_checkpoint", checkpoint)

    def optimizers_from_factories(self, parameters: Any = None) -> Any:
        """``configure_optimizers`` from ``self.optimizer_factory`` and the optional ``self.scheduler_factory``.

        ``parameters`` default to all of the module's (:meth:`parameter_groups`). The scheduler steps every epoch;
        ``ReduceLROnPlateau`` monitors ``val/loss``.
        """
        optimizer = self.optimizer_factory(self.parameter_groups() if parameters is None else parameters)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}

    def parameter_groups(self) -> Any:
        """All parameters; those a transform names in ``no_weight_decay(net)`` go in a group with weight decay 0."""
        skip = {f"net.{name}" for t in getattr(self, "transforms", []) for name in t.no_weight_decay(self.net)}
        if not skip:
            return self.parameters()
        named = list(self.named_parameters())
        return [
            {"params": [p for n, p in named if n not in skip]},
            {"params": [p for n, p in named if n in skip], "weight_decay": 0.0},
        ]

    def check_finite(self, loss: torch.Tensor, name: str = "training loss") -> torch.Tensor:
        """Return ``loss`` if finite; otherwise raise :class:`NonFiniteLossError` naming where it happened."""
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                f"The {name} became {loss.detach().float().cpu().item() if loss.numel() == 1 else 'non-finite'} at "
                f"epoch {self.current_epoch}, step {self.global_step}; expected a finite loss (lower the learning "
                "rate, check the inputs for NaN, or set trainer.gradient_clip_val)."
            )
        return loss
