"""PRP-NAS supernet training (thesis §3.3, Algorithm 2) as a LightningModule.

Phases, by epoch:

1. **Warm-up** (``warmup_epochs`` = N_f): FairNAS strict fairness. Each step trains ``K`` single-path models that
   together use every alive op of every layer once (:func:`~hwnas_pl.prpnas.fair_paths`); their gradients
   accumulate into one optimiser step. With ``warmup_backward: per_path`` (the default) each path is
   backpropagated as soon as it has run, so only one path's graph is held at a time (the summed loss held all
   ``K``: 2.6 vs 1.2 GiB of extra peak memory for NAS-Bench-201 C=16 N=5 at batch 128 on CPU); its gradient
   enters the step's single backward as a zero-valued term, so DDP's reduction, mixed-precision scaling and
   gradient accumulation treat it like the last path's. Validation during warm-up averages the fair paths
   (batch ``b`` runs path ``b mod K`` of a fixed fair group), since the argmax of a uniform α is an arbitrary cell.
2. **Search** (the remaining epochs, N_p): each step trains one path, ``argmax(α)`` per layer (the thesis) or a
   path sampled from ``softmax(α)`` (``path: sample``).

α holds one score per candidate op per layer, normalised per layer by a softmax over the alive ops. It is not
trained by the task loss: :class:`~hwnas_pl.callbacks.ParetoRankAlphaUpdate` updates it with its own optimiser,
and :class:`~hwnas_pl.callbacks.OperationPruning` calls :meth:`SupernetModule.prune_ops`. The pruned ops, the
sampler's state and the space's identity travel in the checkpoint.

The task (:mod:`hwnas_pl.modules.tasks`) decides the loss, the logged metrics, the batch forms (tuples, MONAI
dicts) and the held-out score that ranks sub-networks (accuracy for classification, mIoU for segmentation, −AAE
for regression); the supernet's head must fit the task (the spaces' supernets are classifiers today).

Under DDP every rank draws the same paths (one seeded generator, same state everywhere), α is excluded from DDP's
gradient reduction and updated identically on every rank, and ``find_unused_parameters`` is switched on because a
single path leaves the other ops without gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from typing_extensions import override

from hwnas_pl.checkpoint import CheckpointMismatchError
from hwnas_pl.distributed import decide_on_rank_zero
from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.base import CostModel, CostModelFactory, build_cost_model
from hwnas_pl.modules.base import HWNASModule
from hwnas_pl.modules.tasks import ClassificationTask, Task
from hwnas_pl.nn.loss_terms import LossTerm
from hwnas_pl.prpnas import fair_paths, masked_softmax, sample_paths
from hwnas_pl.spaces.base import SearchSpace
from hwnas_pl.spaces.supernet import batch_statistics, recalibrated_statistics

PATH_RULES = ("argmax", "sample")
BN_MODES = ("batch", "recalibrate")

#: A task class given in YAML by class_path and init_args, called with ``(num_classes, input_shape)``.
TaskFactory = Callable[[int, Sequence[int]], Task]


class SupernetModule(HWNASModule):
    """A weight-sharing supernet over a search space, trained in PRP-NAS's warm-up and search phases.

    Logs ``train/loss`` (mean over the step's paths), the task's validation metrics of the current argmax path
    (``val/loss``, ``val/acc`` for classification; BatchNorm on batch statistics, see
    :func:`~hwnas_pl.spaces.supernet.batch_statistics`), ``supernet/phase`` (0 warm-up, 1 search) and
    ``supernet/alive_ops``.

    Args:
        space: a search space with a supernet (``NASBench201Space``, ``MBConvSpace``).
        num_classes: number of classes (linked from the DataModule by the CLI).
        input_shape: (channels, height, width) of one sample (linked from the DataModule by the CLI).
        warmup_epochs: N_f, epochs of strict-fairness warm-up.
        path: the search phase's path rule, ``argmax`` or ``sample``.
        cost_model: the hardware cost model, a class given by class_path/init_args and called with the space (and
            the data's ``input_shape``/``num_classes`` when it takes them); default: a per-op latency LUT measured
            on this machine.
        cost_metric: which metric of the cost model is the hardware objective (default: its first).
        optimizer: optimiser factory for the supernet weights (α has its own, in the α-update callback).
        scheduler: learning-rate scheduler factory, stepped every epoch.
        seed: seed of the path sampler.
        label_smoothing: label smoothing of the cross-entropy (of the default classification task).
        task: the task, a class called with ``(num_classes, input_shape)`` (YAML: class_path + init_args, e.g.
            :class:`~hwnas_pl.modules.tasks.SegmentationTask`); default classification.
        loss_terms: regularizers added to the training loss of every path.
        heldout_score: the default classification task's sub-network score, ``accuracy`` or ``cross_entropy``.
        bn_mode: BatchNorm when a sub-network's held-out score is estimated: ``batch`` (the held-out batch's own
            statistics) or ``recalibrate`` (running statistics recomputed for each path over
            ``recalibration_batches`` training batches, then eval mode; SPOS).
        recalibration_batches: training batches per recalibration.
        heldout_batch_size: cut the held-out samples into batches of this size per device (default: the validation
            loader's), so batch statistics do not depend on how many devices share the global batch.
        warmup_backward: ``per_path`` (backpropagate each fair path at once: one graph in memory) or ``summed``
            (one backward of the summed loss: ``K`` graphs); the same gradients.
    """

    loss_name = "supernet training loss"

    def __init__(
        self,
        space: SearchSpace,
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        warmup_epochs: int = 20,
        path: str = "argmax",
        cost_model: CostModelFactory | None = None,
        cost_metric: str | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        seed: int = 0,
        label_smoothing: float = 0.0,
        task: TaskFactory | None = None,
        loss_terms: Sequence[LossTerm] | None = None,
        heldout_score: str = "accuracy",
        bn_mode: str = "batch",
        recalibration_batches: int = 4,
        heldout_batch_size: int | None = None,
        warmup_backward: str = "per_path",
    ) -> None:
        super().__init__()
        if path not in PATH_RULES:
            raise ConfigError(f"SupernetModule path must be one of {', '.join(PATH_RULES)}, got '{path}'.")
        if warmup_backward not in ("per_path", "summed"):
            raise ConfigError(
                f"SupernetModule warmup_backward must be 'per_path' or 'summed', got '{warmup_backward}'."
            )
        if bn_mode not in BN_MODES:
            raise ConfigError(f"SupernetModule bn_mode must be one of {', '.join(BN_MODES)}, got '{bn_mode}'.")
        if recalibration_batches < 1 or (heldout_batch_size is not None and heldout_batch_size < 1):
            raise ConfigError(
                "SupernetModule recalibration_batches and heldout_batch_size must be >= 1, got "
                f"{recalibration_batches} and {heldout_batch_size}."
            )
        if warmup_epochs < 0:
            raise ConfigError(f"SupernetModule warmup_epochs must be 0 or more, got {warmup_epochs}.")
        if num_classes < 2 and task is None:
            raise ConfigError(f"SupernetModule needs num_classes >= 2 for classification, got {num_classes}.")
        self.save_plain_hyperparameters()
        self.space = space
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = num_classes
        built = task(num_classes, self.input_shape) if task is not None else None
        built = built or ClassificationTask(num_classes, self.input_shape, label_smoothing, heldout_score)
        self.compose(built, space.build_supernet(num_classes, self.input_shape), loss_terms, net_attribute="supernet")
        if hasattr(self, "val_acc_best"):  # supernet checkpoints never held it: keep their keys
            self.val_acc_best.persistent(False)
        choices = self.supernet.choices
        width = max(len(c) for c in choices)
        valid = torch.zeros(len(choices), width, dtype=torch.bool)
        for layer, ops in enumerate(choices):
            valid[layer, : len(ops)] = True
        self.alpha = nn.Parameter(torch.zeros(len(choices), width))
        self.register_buffer("alive_mask", valid)
        # α and the mask change identically on every rank through the callbacks, never through DDP
        self._ddp_params_and_buffers_to_ignore = ["alpha", "alive_mask"]
        self.warmup_epochs = warmup_epochs
        self.path_rule = path
        self.cost_model: CostModel = build_cost_model(
            cost_model or _default_cost_model, space, self.input_shape, num_classes
        )
        self.cost_metric = cost_metric or self.cost_model.metrics[0]
        if self.cost_metric not in self.cost_model.metrics:
            raise ConfigError(
                f"Cost model {type(self.cost_model).__name__} has no metric '{self.cost_metric}'; expected one of: "
                f"{', '.join(self.cost_model.metrics)}."
            )
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.rng = np.random.default_rng(seed)
        self.pruned: list[tuple[int, str]] = []
        self._cost_cache: dict[tuple[int, ...], float] = {}
        self.bn_mode, self.recalibration_batches = bn_mode, recalibration_batches
        self.heldout_batch_size = heldout_batch_size
        self.warmup_backward = warmup_backward
        self._heldout: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._heldout_asked = 0
        self._recalibration: list[torch.Tensor] = []
        self._argmax_cache: tuple[tuple[int, int], np.ndarray] | None = None
        self._val_paths: np.ndarray | None = None
        self._val_batch = 0

    #: the default classification task's setting, where older code read it on the module
    label_smoothing = property(lambda self: getattr(self.task, "label_smoothing", 0.0))

    @property
    def net(self) -> nn.Module:
        """The supernet (what loss terms hook into)."""
        return self.supernet

    # ------------------------------------------------------------------ paths and α
    @property
    def phase(self) -> str:
        """``"warmup"`` during the first ``warmup_epochs`` epochs, then ``"search"``."""
        return "warmup" if self.current_epoch < self.warmup_epochs else "search"

    def alive_indices(self) -> list[list[int]]:
        """Op indices (the space's encoding) still alive in each layer (read from the network: no device sync)."""
        return [[ops.index(op) for op in self.supernet.alive(layer)] for layer, ops in enumerate(self.supernet.choices)]

    def ops_of(self, path: Sequence[int]) -> tuple[str, ...]:
        """Op names of a path of op indices."""
        return tuple(self.supernet.choices[layer][int(i)] for layer, i in enumerate(path))

    def arch_string(self, path: Sequence[int]) -> str:
        """The path in the space's string format."""
        return self.space.to_string(self.space.decode(np.asarray(path)))

    def alpha_probs(self) -> torch.Tensor:
        """Per-layer normalised α (softmax over the alive ops; pruned entries 0), differentiable."""
        return masked_softmax(self.alpha, self.alive_mask)

    def argmax_path(self) -> np.ndarray:
        """The op of largest α in every layer (ties: the space's first alive op).

        Recomputed only when α or the alive ops changed (their version counters), so a training step does not
        wait for the device; change α in place under ``torch.no_grad()``, not through ``.data``.
        """
        key = (self.alpha._version, self.alive_mask._version)
        if self._argmax_cache is None or self._argmax_cache[0] != key:
            self._argmax_cache = (key, self.alpha_probs().detach().argmax(dim=1).cpu().numpy())
        return self._argmax_cache[1].copy()

    def sample_subnets(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` distinct paths through the alive ops, ``(n, L)`` op indices."""
        return sample_paths(self.alive_indices(), n, rng)

    def _search_path(self) -> np.ndarray:
        if self.path_rule == "argmax":
            return self.argmax_path()
        probs = self.alpha_probs().detach().double().cpu().numpy()
        return np.array([self.rng.choice(len(p), p=p / p.sum()) for p in probs])

    # ------------------------------------------------------------------ estimates used by the callbacks
    def heldout_batches(self, num_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``num_batches`` batches of this rank's validation loader, kept on the device and reused.

        Raises:
            ConfigError: when the run has no validation data.
        """
        if num_batches > self._heldout_asked:  # a loader shorter than asked is read once, not on every call
            trainer = self.trainer
            if trainer.val_dataloaders is None:
                trainer.fit_loop.epoch_loop.val_loop.setup_data()
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
            if loader is None:
                raise ConfigError(
                    "PRP-NAS estimates sub-network accuracy on held-out batches, but the run has no validation "
                    "data; expected a DataModule with a validation split."
                )
            self._heldout = []
            for batch in loader:  # any batch form of the task (tuples, MONAI dicts, frames)
                x, y = self.task.unpack(batch)
                self._heldout.append((x.to(self.device), y.to(self.device)))
                if len(self._heldout) == num_batches:
                    break
            self._heldout_asked = num_batches
        batches = self._heldout[:num_batches]
        if self.heldout_batch_size is None or not batches:
            return batches
        x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        return list(zip(x.split(self.heldout_batch_size), y.split(self.heldout_batch_size)))

    def recalibration_inputs(self) -> list[torch.Tensor]:
        """``recalibration_batches`` fixed training batches (this rank's part), kept on the device.

        Read from the training dataset with a loader of its own (the first samples of a seeded permutation), so
        the training loader's epoch is not disturbed.
        """
        if not self._recalibration:
            dataset = self.trainer.train_dataloader.dataset
            batch = self.trainer.train_dataloader.batch_size or 64
            rank, world = self.trainer.global_rank, self.trainer.world_size
            order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(7))
            take = order[rank::world][: batch * self.recalibration_batches].tolist()
            loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, take), batch_size=batch)
            self._recalibration = [self.task.unpack(b)[0].to(self.device) for b in loader]
        return self._recalibration

    def _path_statistics(self, ops: tuple[str, ...]):
        """The BatchNorm context of one path's estimate (``bn_mode``)."""
        if self.bn_mode == "recalibrate":
            return recalibrated_statistics(self.supernet, lambda z: self.supernet(z, ops), self.recalibration_inputs())
        return batch_statistics(self.supernet)

    @torch.no_grad()
    def estimate_accuracy(self, paths: np.ndarray, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> np.ndarray:
        """The task's held-out score of each path with the shared weights on ``batches``.

        Top-1 accuracy (or −cross-entropy) for classification, mIoU for segmentation, −AAE for regression, from
        statistics summed over every rank's batches; BatchNorm as ``bn_mode`` says.
        """
        if len(paths) == 0:
            return np.zeros(0)
        rows = []
        for path in paths:
            ops = self.ops_of(path)

            def net(z: torch.Tensor, ops: tuple[str, ...] = ops) -> torch.Tensor:
                return self.supernet(z, ops)

            with self._path_statistics(ops):
                rows.append(torch.stack([self.task.score_state(self.task.infer(net, x), y) for x, y in batches]).sum(0))
        stats = torch.stack(rows).to(self.device)
        if self._trainer is not None and self.trainer.world_size > 1:
            stats = self.trainer.strategy.reduce(stats, reduce_op="sum")
        return np.array([self.task.score(row) for row in stats.cpu()])

    def costs(self, paths: np.ndarray) -> np.ndarray:
        """The hardware cost of each path from the cost model, computed on rank 0 and shared with every rank."""
        keys = [tuple(int(i) for i in p) for p in paths]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cost_cache))
        if todo:

            def price() -> list[float]:
                archs = [self.space.decode(np.asarray(p)) for p in todo]
                return self.cost_model.evaluate(archs)[self.cost_metric].tolist()

            self._cost_cache.update(zip(todo, decide_on_rank_zero(self._trainer, price)))
        return np.array([self._cost_cache[k] for k in keys])

    # ------------------------------------------------------------------ pruning
    def prune_ops(self, ops: Sequence[tuple[int, str]]) -> int:
        """Delete each ``(layer, op name)`` from the supernet, α's support and the optimisers; returns parameters freed.

        Under DDP the module is wrapped again, so that the reducer no longer holds the deleted parameters.
        """
        before = {id(p): p for p in self.supernet.parameters()}
        freed = 0
        for layer, op in ops:
            freed += self.supernet.prune(layer, op)
            self.alive_mask[layer, self.supernet.choices[layer].index(op)] = False
            self.pruned.append((int(layer), str(op)))
        kept = {id(p) for p in self.supernet.parameters()}
        gone = [p for key, p in before.items() if key not in kept]
        trainer = self._trainer
        if trainer is not None and gone:
            gone_ids = {id(p) for p in gone}
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["params"] = [p for p in group["params"] if id(p) not in gone_ids]
                for p in gone:
                    optimizer.state.pop(p, None)
            strategy = trainer.strategy
            if isinstance(strategy, DDPStrategy) and strategy.model is not self:
                strategy.model = self
                strategy.configure_ddp()
        return freed

    # ------------------------------------------------------------------ Lightning hooks
    @override
    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        if isinstance(strategy, DDPStrategy):
            kwargs = getattr(strategy, "_ddp_kwargs", None)
            if kwargs is None:
                raise ConfigError(
                    "SupernetModule trains one path per step under DDP; set "
                    "trainer.strategy.init_args.find_unused_parameters: true."
                )
            if not kwargs.get("find_unused_parameters"):
                kwargs["find_unused_parameters"] = True
                rank_zero_info("SupernetModule: DDP find_unused_parameters switched on (one path trains per step).")
        if stage == "fit":
            self.check_cost_model()

    def check_cost_model(self) -> None:
        """Price a set of paths that uses every op of every layer once, so that a cost model lacking an op fails now.

        Raises:
            ConfigError: naming the cost model and what it could not price.
        """
        cover = fair_paths([range(len(c)) for c in self.supernet.choices], np.random.default_rng(0))
        try:
            self.costs(cover)
        except (UserInputError, KeyError, ValueError) as err:
            raise ConfigError(
                f"Cost model {type(self.cost_model).__name__} cannot price every op of the {self.space.name} "
                f"supernet ({err}); expected one that covers every candidate op."
            ) from None

    @override
    def forward(self, x: torch.Tensor, ops: Sequence[str] | None = None) -> torch.Tensor:
        """Logits of path ``ops`` (default: the argmax path)."""
        return self.supernet(x, self.ops_of(self.argmax_path()) if ops is None else ops)

    @override
    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Warm-up: the summed task loss of the fair paths (one optimiser step); search: the loss of one path."""
        paths = fair_paths(self.alive_indices(), self.rng) if self.phase == "warmup" else [self._search_path()]
        early = paths[:-1] if self.warmup_backward == "per_path" and torch.is_grad_enabled() else []
        loss, outputs = self._backpropagate_now(x, y, early), None
        for p in paths[len(early) :]:
            outputs = self.supernet(x, self.ops_of(p))
            loss = loss + self.task.loss(outputs, y)
        self.log("supernet/phase", float(self.phase == "search"), on_step=False, on_epoch=True)
        alive_ops = float(sum(len(ops) for ops in self.alive_indices()))  # from the network: no device sync
        self.log("supernet/alive_ops", alive_ops, on_step=False, on_epoch=True)
        return loss, outputs, loss.detach() / len(paths)

    def _backpropagate_now(self, x: torch.Tensor, y: torch.Tensor, paths: Sequence[np.ndarray]) -> torch.Tensor:
        r"""The summed loss of ``paths``, backpropagated path by path, as a term for the step's own backward.

        Each path's graph is freed once its gradient :math:`g` is taken. The term
        :math:`\sum_w \langle w, g_w \rangle - \mathrm{sg}(\cdot) + L` has the paths' loss :math:`L` as value and
        :math:`g` as gradient, so the one backward that Lightning runs (DDP-reduced, scaled, divided for
        accumulation) carries them.
        """
        if len(paths) == 0:
            return torch.zeros((), device=x.device)
        params = [p for p in self.supernet.parameters() if p.requires_grad]
        grads: list[torch.Tensor | None] = [None] * len(params)
        value = torch.zeros((), device=x.device)
        for path in paths:
            loss = self.task.loss(self.supernet(x, self.ops_of(path)), y)
            self.check_finite(loss, self.loss_name)
            for i, g in enumerate(torch.autograd.grad(loss, params, allow_unused=True)):
                if g is not None:
                    grads[i] = g if grads[i] is None else grads[i] + g
            value = value + loss.detach()
        inner = sum((w * g).sum() for w, g in zip(params, grads) if g is not None)
        return inner - inner.detach() + value

    @override
    def on_validation_epoch_start(self) -> None:
        self._val_paths = fair_paths(self.alive_indices(), np.random.default_rng(12345))

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._val_batch = batch_idx
        super().validation_step(batch, batch_idx)

    @override
    def evaluation_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The argmax path's outputs (warm-up validation: fair path ``batch mod K``), BatchNorm on batch statistics."""
        ops = None
        validating = self._trainer is not None and (self.trainer.validating or self.trainer.sanity_checking)
        if validating and self.phase == "warmup" and self._val_paths is not None:
            ops = self.ops_of(self._val_paths[self._val_batch % len(self._val_paths)])
        with batch_statistics(self.supernet):
            return self.task.infer(lambda z: self(z, ops), x)

    @override
    def configure_optimizers(self) -> Any:
        return self.optimizers_from_factories(p for name, p in self.named_parameters() if name != "alpha")

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["supernet"] = {
            "space": self.space.name,
            "choices": [list(c) for c in self.supernet.choices],
            "pruned": [[layer, op] for layer, op in self.pruned],
            "rng": self.rng.bit_generator.state,
        }

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get("supernet")
        source = self.checkpoint_source()
        if info is None:
            raise CheckpointMismatchError(
                f"{source} was not written by a SupernetModule; expected a supernet checkpoint."
            )
        choices = [list(c) for c in self.supernet.choices]
        if info["space"] != self.space.name or info["choices"] != choices:
            raise CheckpointMismatchError(
                f"{source} holds a supernet of the {info['space']} space with {len(info['choices'])} layers, but "
                f"the config's space is {self.space.name} with {len(choices)} layers of other ops; expected a "
                "checkpoint of the same space."
            )
        todo = [(int(layer), str(op)) for layer, op in info["pruned"] if (int(layer), str(op)) not in self.pruned]
        if todo:
            self.prune_ops(todo)
        self.rng.bit_generator.state = info["rng"]
        super().on_load_checkpoint(checkpoint)


def _default_cost_model(space: SearchSpace, input_shape: Sequence[int], num_classes: int) -> CostModel:
    """Latency LUT of this machine's CPU, batch 1 (measured once per op, in memory)."""
    from hwnas_pl.evaluators.lut import LatencyLUT

    return LatencyLUT(space, input_shape=input_shape, num_classes=num_classes, warmup=3, repeats=10)
