r"""Training-free and one-batch accuracy proxies as cost models: the zero-cost proxies and HW-EvRSNAS's RMI score.

Both score a network built from the space on one seeded batch of the DataModule's training set, on this process's
device (:meth:`~hwnas_pl.evaluators.base.CostModel.place`), with the same initialisation for the same seed; scores
are cached per architecture.

- :class:`ZeroCostModel` (``zero_cost``): one metric per proxy of :mod:`hwnas_pl.nn.zero_cost` (naswot, synflow,
  snip, grad_norm, jacov, zico), no training.
- :class:`RMIProxyModel` (``rmi_proxy``): HW-EvRSNAS §3.2 (Eq. 2–3). The batch is the ``batch_size`` training
  examples of lowest reference cross-entropy among a seeded pool of ``pool_size`` (RMI-NAS's "selected batch");
  the reference's stage features on it are computed once. A candidate trains ``n_train`` SGD steps on that batch
  with

  .. math:: \mathcal L = \beta\,(L - \varphi(\alpha^*, \alpha)) + (1 - \beta)\,\mathrm{CE}

  (Eq. 3 with the similarity maximised, RMI-NAS's reading), and its score is :math:`\varphi` (Eq. 2, the sum of
  linear CKA over the L paired stages, in [0, L]) after training, measured on the same batch.

The reference is any ``ClassifierModule`` checkpoint (``.ckpt``), a ``torch.save``'d module or state dict with
``reference_network``, or an ``nn.Module``; with ``reference_config`` a missing checkpoint is first trained by
``hwnas fit --config reference_config``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.base import CostModel, register_cost_model
from hwnas_pl.nn.similarity import rmi_score
from hwnas_pl.nn.zero_cost import ZERO_COST_PROXIES, zero_cost_proxy
from hwnas_pl.rng import isolated_rng
from hwnas_pl.spaces.base import SearchSpace


def draw_examples(datamodule: Any, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training examples drawn without replacement with ``seed`` (DataModule set up for "fit" first)."""
    if getattr(datamodule, "data_train", None) is None:
        datamodule.prepare_data()
        datamodule.setup("fit")
    data = datamodule.data_train
    if n > len(data):
        raise ConfigError(f"A proxy batch of {n} examples was asked for, but the training set holds {len(data)}.")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    with isolated_rng(seed):  # a training set with random augmentation gives the same batch for the same seed
        x, y = torch.utils.data.default_collate([data[int(i)] for i in idx])
    return x, y


class OneBatchModel(CostModel):
    """Base of the proxies: the DataModule, the seeded batch, this process's device and the per-arch cache.

    Args:
        space: the search space.
        datamodule: the data; its training set gives the batch.
        num_classes, input_shape: of the networks built from the space (linked from the data in a config).
        batch_size: examples in the batch.
        seed: of the batch and of every network's initialisation.
        threads: CPU threads while scoring (``None``: torch's setting). One is fastest for the small networks a
            proxy trains (2 threads on a 2-core machine ran 3.4x slower with another job beside it); run ranks
            with ``torchrun`` to use more cores.
    """

    def __init__(
        self,
        space: SearchSpace,
        datamodule: Any,
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        batch_size: int = 64,
        seed: int = 0,
        threads: int | None = 1,
    ) -> None:
        super().__init__(space)
        if threads is not None and threads < 1:
            raise ConfigError(f"{type(self).__name__} threads must be >= 1 or null, got {threads}.")
        self.threads = threads
        if batch_size < 2:
            raise ConfigError(f"{type(self).__name__} batch_size must be >= 2, got {batch_size}.")
        self.datamodule, self.num_classes, self.input_shape = datamodule, num_classes, tuple(input_shape)
        self.batch_size, self.seed = batch_size, seed
        self.device = torch.device("cpu")
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._cache: dict[Any, dict[str, float]] = {}

    def place(self, device: str) -> None:
        self.device = torch.device(device)
        self._batch = None

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch on this process's device (drawn once)."""
        if self._batch is None:
            x, y = self.select_batch()
            self._batch = x.to(self.device), y.to(self.device)
        return self._batch

    def select_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Default: ``batch_size`` seeded random training examples."""
        return draw_examples(self.datamodule, self.batch_size, self.seed)

    def network(self, arch: Any) -> nn.Module:
        """``arch`` built with the seed's initialisation, in training mode, on the device."""
        with isolated_rng(self.seed):
            net = self.space.build(arch, self.num_classes, self.input_shape)
        return net.to(self.device).train()

    def score(self, arch: Any) -> dict[str, float]:
        raise NotImplementedError

    def _evaluate(self, archs: list[Any], out: dict[str, Any]) -> None:
        before = torch.get_num_threads()
        if self.threads is not None and self.device.type == "cpu":
            torch.set_num_threads(self.threads)
        try:
            for arch in archs:
                if arch not in self._cache:
                    self._cache[arch] = self.score(arch)
        finally:
            torch.set_num_threads(before)
        for metric in self.directions:
            out[metric] = [self._cache[a][metric] for a in archs]


@register_cost_model("zero_cost")
class ZeroCostModel(OneBatchModel):
    """Zero-cost proxies (:mod:`hwnas_pl.nn.zero_cost`), one ``max`` metric each, named after the proxy.

    Args:
        proxies: names among naswot, jacov, grad_norm, snip, synflow, zico (default: all).
        (the rest: :class:`OneBatchModel`)

    Example:
        >>> from hwnas_pl.datamodules import DigitsDataModule
        >>> from hwnas_pl.spaces import NASBench201Space
        >>> m = ZeroCostModel(NASBench201Space(4, 1), DigitsDataModule(), 10, (1, 8, 8), proxies=["naswot", "synflow"])
        >>> sorted(m.evaluate(["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"]))
        ['naswot', 'synflow']
    """  # noqa: E501

    def __init__(
        self,
        space: SearchSpace,
        datamodule: Any,
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        proxies: Sequence[str] | None = None,
        batch_size: int = 64,
        seed: int = 0,
        threads: int | None = 1,
    ) -> None:
        super().__init__(space, datamodule, num_classes, input_shape, batch_size, seed, threads)
        self.proxies = list(proxies or ZERO_COST_PROXIES)
        self.functions: dict[str, Callable[..., float]] = {p: zero_cost_proxy(p) for p in self.proxies}
        self.directions = {p: "max" for p in self.proxies}

    def score(self, arch: Any) -> dict[str, float]:
        x, y = self.batch()
        out = {}
        for name, fn in self.functions.items():
            with isolated_rng(self.seed):
                out[name] = float(fn(self.network(arch), x, y))  # a fresh network per proxy: none sees another's
        return out


def load_reference(
    reference: str | Path | nn.Module, network: Callable[..., nn.Module] | None, num_classes: int, input_shape
) -> nn.Module:
    """The reference network of a path or a module.

    A path is a ``.ckpt`` of a ClassifierModule, or a ``torch.save``'d module or state dict (the latter loaded into
    ``network(num_classes, input_shape)``).

    Raises:
        UserInputError: when the file is missing or holds neither.
    """
    if isinstance(reference, nn.Module):
        return reference
    path = Path(reference)
    if not path.is_file():
        raise UserInputError(
            f"Reference model '{path}' does not exist; expected a ClassifierModule checkpoint (.ckpt) or a saved "
            "network (or give reference_config to train one first)."
        )
    if path.suffix == ".ckpt":
        from hwnas_pl.modules import ClassifierModule

        return ClassifierModule.load_from_checkpoint(path, map_location="cpu").net
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, Mapping) and network is not None:
        net = network(num_classes, tuple(input_shape))
        net.load_state_dict(obj.get("state_dict", obj))
        return net
    raise UserInputError(
        f"Reference model '{path}' holds a {type(obj).__name__}; expected a checkpoint, a saved nn.Module, or a "
        "state dict with reference_network naming the class to load it into."
    )


def named_modules(net: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """The sub-modules of ``net`` at the dotted ``names``.

    Raises:
        ConfigError: for a name that is not a sub-module.
    """
    modules = dict(net.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        top = [n for n in modules if n and "." not in n]
        raise ConfigError(f"Reference layer '{missing[0]}' is not a module of the reference; its top-level modules "
                          f"are: {', '.join(top)}.")  # fmt: skip
    return [modules[n] for n in names]


class FeatureTap:
    """Forward hooks keeping the outputs of ``modules`` of the latest forward pass, in order."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.outputs: list[torch.Tensor | None] = [None] * len(modules)
        self.handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(modules)]

    def _hook(self, i: int):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.outputs[i] = output

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@register_cost_model("rmi_proxy")
class RMIProxyModel(OneBatchModel):
    """HW-EvRSNAS's representation-similarity proxy (Eq. 2–3): ``rmi`` (max), φ after one-batch training.

    Args:
        space: the search space (its :meth:`~hwnas_pl.spaces.base.SearchSpace.stage_modules` are the candidate's
            layers).
        datamodule: the data.
        reference: the reference model (see :func:`load_reference`).
        reference_network: the class a saved state dict is loaded into (``(num_classes, input_shape)`` first).
        reference_config: an ``hwnas fit`` config that writes ``reference`` when it does not exist yet (train it
            once before a ``torchrun`` search: every rank would train its own).
        reference_layers: dotted module names of the reference's stages (default: its ``stage_modules()``).
        stages: indices of the candidate's stage modules to pair, in order (default: all).
        beta: β of Eq. 3 (paper: 0.8).
        n_train: SGD steps on the batch (paper: 100).
        batch_size: the batch (RMI-NAS: 32); pool_size: the random pool it is selected from.
        lr, momentum, weight_decay: the one-batch SGD (RMI-NAS: 0.1, 0.9, 5e-4).
        (the rest: :class:`OneBatchModel`)
    """

    directions = {"rmi": "max"}

    def __init__(
        self,
        space: SearchSpace,
        datamodule: Any,
        reference: str | Path | nn.Module,
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        reference_network: Callable[..., nn.Module] | None = None,
        reference_config: str | Path | None = None,
        reference_layers: Sequence[str] | None = None,
        stages: Sequence[int] | None = None,
        beta: float = 0.8,
        n_train: int = 100,
        batch_size: int = 32,
        pool_size: int = 320,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        seed: int = 0,
        threads: int | None = 1,
    ) -> None:
        super().__init__(space, datamodule, num_classes, input_shape, batch_size, seed, threads)
        if not 0.0 <= beta <= 1.0:
            raise ConfigError(f"RMIProxyModel beta must be in [0, 1], got {beta}.")
        if n_train < 0 or pool_size < batch_size:
            raise ConfigError(
                f"RMIProxyModel needs n_train >= 0 and pool_size >= batch_size, got {n_train} and {pool_size} < "
                f"{batch_size}."
            )
        if reference_config is not None and not isinstance(reference, nn.Module) and not Path(reference).is_file():
            train_reference(reference_config, Path(reference))
        self.reference = load_reference(reference, reference_network, num_classes, input_shape).eval()
        if reference_layers is not None:
            self.reference_stages = named_modules(self.reference, reference_layers)
        elif hasattr(self.reference, "stage_modules"):
            self.reference_stages = list(self.reference.stage_modules())
        else:
            raise ConfigError(
                f"The reference {type(self.reference).__name__} does not name its stages; give reference_layers "
                "(dotted module names, e.g. [layer1, layer2, layer3])."
            )
        self.stages = None if stages is None else [int(s) for s in stages]
        self.beta, self.n_train, self.pool_size = beta, n_train, pool_size
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self._reference_features: list[torch.Tensor] | None = None

    def place(self, device: str) -> None:
        super().place(device)
        self.reference.to(self.device)
        self._reference_features = None

    def select_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``batch_size`` examples of a seeded pool of ``pool_size`` with the lowest reference cross-entropy."""
        x, y = draw_examples(self.datamodule, self.pool_size, self.seed)
        self.reference.to(self.device)
        with torch.no_grad():
            losses = torch.cat([
                F.cross_entropy(self.reference(x[i : i + 256].to(self.device)), y[i : i + 256].to(self.device),
                                reduction="none").cpu()
                for i in range(0, len(y), 256)
            ])  # fmt: skip
        keep = torch.argsort(losses, stable=True)[: self.batch_size]
        return x[keep], y[keep]

    def reference_features(self) -> list[torch.Tensor]:
        """The reference's stage outputs on the batch (computed once)."""
        if self._reference_features is None:
            x, _ = self.batch()
            tap = FeatureTap(self.reference_stages)
            try:
                with torch.no_grad():
                    self.reference(x)
            finally:
                tap.remove()
            self._reference_features = [o.detach() for o in tap.outputs]
        return self._reference_features

    def candidate_stages(self, net: nn.Module) -> list[nn.Module]:
        stages = self.space.stage_modules(net, self.input_shape)
        if self.stages is not None:
            stages = [stages[i] for i in self.stages]
        if len(stages) != len(self.reference_stages):
            raise ConfigError(
                f"The {self.space.name} network has {len(stages)} stage outputs and the reference "
                f"{len(self.reference_stages)} layers; pick as many with `stages` or `reference_layers`."
            )
        return stages

    def train_and_score(self, arch: Any) -> tuple[float, float]:
        """(φ after ``n_train`` steps, the final loss): Eq. 3 minimised on the batch, Eq. 2 measured after."""
        x, y = self.batch()
        ref = self.reference_features()
        net = self.network(arch)
        tap = FeatureTap(self.candidate_stages(net))
        n_layers = len(ref)
        opt = torch.optim.SGD(net.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        loss = torch.tensor(float("nan"))
        try:
            with isolated_rng(self.seed):
                for _ in range(self.n_train):
                    logits = net(x)
                    loss = self.beta * (n_layers - rmi_score(tap.outputs, ref)) + (1 - self.beta) * F.cross_entropy(
                        logits, y
                    )
                    if not torch.isfinite(loss):
                        break  # a diverged candidate scores what it had
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    net(x)
                    phi = float(rmi_score(tap.outputs, ref))
        finally:
            tap.remove()
        return (phi if np.isfinite(phi) else 0.0), float(loss.detach())

    def score(self, arch: Any) -> dict[str, float]:
        return {"rmi": self.train_and_score(arch)[0]}


def train_reference(config: str | Path, checkpoint: Path) -> None:
    """Run ``hwnas fit --config config`` (a subprocess) to write the reference ``checkpoint``.

    Raises:
        UserInputError: when the config is missing, the run fails, or it did not write ``checkpoint``.
    """
    config = Path(config)
    if not config.is_file():
        raise UserInputError(f"Reference config '{config}' does not exist; expected an `hwnas fit` YAML config.")
    run = subprocess.run([sys.executable, "-m", "hwnas_pl", "fit", "--config", str(config)], capture_output=True,
                         text=True)  # fmt: skip
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserInputError(f"Training the reference with '{config}' failed: {last}")
    if not checkpoint.is_file():
        raise UserInputError(
            f"'hwnas fit --config {config}' finished but did not write the reference '{checkpoint}'; expected its "
            "ModelCheckpoint to save there."
        )
