"""Weight-sharing supernets: every candidate op of every searchable layer, one path run per forward pass.

A supernet's *layers* are the positions of its space's integer encoding (a NAS-Bench-201 edge, an MBConv layer), so
the architecture scores α, the samplers and the exported strings all speak the space's own encoding. A layer may
occur at many places of the network (NAS-Bench-201 repeats its cell 15 times); each place holds its own
:class:`ChoiceLayer` with its own weights for every candidate op, and a path picks the same op at all of them.

Pruning deletes an op's modules from every place: its parameters leave the network (thesis §3.3, step 3).
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from hwnas_pl.errors import ConfigError


class ChoiceLayer(nn.ModuleDict):
    """The candidate ops of one searchable layer at one place in the network, keyed by op name."""

    def forward(self, x: torch.Tensor, op: str) -> torch.Tensor:
        return self[op](x)


class Supernet(nn.Module, ABC):
    """Base class of the supernets that :meth:`SearchSpace.build_supernet` returns.

    Args:
        choices: the op names of each searchable layer, in the space's encoding order.

    Subclasses register their :class:`ChoiceLayer` modules, implement :meth:`_forward` and :meth:`_child_key` (the
    name a supernet parameter has in the standalone network ``space.build(arch)``).
    """

    def __init__(self, choices: Sequence[Sequence[str]]) -> None:
        super().__init__()
        self.choices = tuple(tuple(c) for c in choices)

    # ------------------------------------------------------------------ TO BE OVERWRITTEN
    @abstractmethod
    def _forward(self, x: torch.Tensor, ops: tuple[str, ...]) -> torch.Tensor:
        """Logits of the path ``ops`` (one alive op name per layer)."""

    @abstractmethod
    def places(self, layer: int) -> list[ChoiceLayer]:
        """Every :class:`ChoiceLayer` that realises searchable layer ``layer``."""

    @abstractmethod
    def _child_key(self, name: str, ops: tuple[str, ...]) -> str | None:
        """Name of supernet tensor ``name`` in ``space.build(ops)``, or ``None`` when the path does not use it."""

    # ------------------------------------------------------------------ public API
    @property
    def num_layers(self) -> int:
        return len(self.choices)

    def alive(self, layer: int) -> tuple[str, ...]:
        """The ops of ``layer`` not pruned yet, in the space's order."""
        present = self.places(layer)[0]
        return tuple(op for op in self.choices[layer] if op in present)

    def check_path(self, ops: Sequence[str]) -> tuple[str, ...]:
        """``ops`` as a tuple, or ConfigError when it has the wrong length or names a pruned or unknown op."""
        ops = tuple(ops)
        if len(ops) != self.num_layers:
            raise ConfigError(f"A supernet path names one op per layer ({self.num_layers}), got {len(ops)}.")
        for layer, op in enumerate(ops):
            if op not in self.alive(layer):
                alive = ", ".join(self.alive(layer))
                raise ConfigError(f"Op '{op}' of supernet layer {layer} is pruned or unknown; alive ops: {alive}.")
        return ops

    def forward(self, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
        return self._forward(x, self.check_path(ops))

    def prune(self, layer: int, op: str) -> int:
        """Delete ``op`` from every place of ``layer``; returns how many parameters left the network.

        Raises:
            ConfigError: when ``op`` is not alive in ``layer`` or is the layer's last alive op.
        """
        alive = self.alive(layer)
        if op not in alive:
            raise ConfigError(f"Op '{op}' of supernet layer {layer} is not alive; alive ops: {', '.join(alive)}.")
        if len(alive) == 1:
            raise ConfigError(f"Op '{op}' is the last alive op of supernet layer {layer}; a layer keeps at least one.")
        removed = 0
        for place in self.places(layer):
            removed += sum(p.numel() for p in place[op].parameters())
            del place[op]
        return removed

    def child_state_dict(self, ops: Sequence[str]) -> dict[str, torch.Tensor]:
        """The state dict of ``space.build(ops)`` holding this supernet's shared weights of that path."""
        ops = self.check_path(ops)
        out = {}
        for name, tensor in self.state_dict().items():
            key = self._child_key(name, ops)
            if key is not None:
                out[key] = tensor
        return out


def rename_prefix(name: str, table: Sequence[tuple[str, str]]) -> str | None:
    """``name`` with the first matching regular-expression prefix of ``table`` replaced, or ``None`` if none match."""
    for pattern, replacement in table:
        match = re.match(pattern, name)
        if match:
            return match.expand(replacement) + name[match.end() :]
    return None


@contextlib.contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Run ``module``'s BatchNorm layers on the current batch's statistics without touching their running stats.

    A supernet's running statistics mix every path it trained, so one path's accuracy is estimated with the
    held-out batch's own mean and variance (the usual one-shot practice; the thesis does not say [AMBIG]).
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [
        (m.training, m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
        for m in norms
    ]
    try:
        for m in norms:
            m.train()
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
        yield
    finally:
        for m, (training, momentum, tracked) in zip(norms, saved):
            m.train(training)
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


@contextlib.contextmanager
def recalibrated_statistics(
    module: nn.Module, forward: Callable[[torch.Tensor], Any], batches: Sequence[torch.Tensor]
) -> Iterator[None]:
    """Run ``module``'s BatchNorm layers on statistics recomputed for one path, then put the old ones back.

    The running statistics are reset and re-estimated as the plain average over ``forward`` (the path) applied to
    ``batches`` (training inputs), and the layers run in eval mode inside the block (SPOS, Guo et al. 2020): a
    sub-network's estimate then depends neither on the held-out batch size nor on the number of devices.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.training, m.momentum, {k: v.clone() for k, v in m.state_dict().items()}) for m in norms]
    try:
        with torch.no_grad():
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the recalibration batches
                m.train()
            for x in batches:
                forward(x)
            for m in norms:
                m.eval()
        yield
    finally:
        for m, (training, momentum, state) in zip(norms, saved):
            m.load_state_dict(state)
            m.momentum = momentum
            m.train(training)
