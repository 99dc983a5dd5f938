r"""Loss terms: regularizers added to a task loss, by config or by a callback (no Lightning here).

Every LightningModule of the package trains on

.. math:: L = L_{task} + \sum_k w_k\, r_k(\text{module}, \text{batch}, \text{outputs})

and logs each :math:`r_k` as ``train/<name>``. A term is an ``nn.Module``, so state it keeps (a running mean of
feature maps, say) moves with the model and is saved in checkpoints. :class:`FeatureLossTerm` gives a term the
outputs of named layers through forward hooks; the batch is passed whole, so a term sees paired inputs (frames
``t`` and ``t + 1``) as the DataModule delivers them.

In YAML::

    model:
      class_path: hwnas_pl.modules.ClassifierModule
      init_args:
        loss_terms:
          - class_path: hwnas_pl.nn.ActivationPenalty
            init_args: {layers: [features.0], weight: 1.0e-4}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hwnas_pl.errors import ConfigError


class LossTerm(nn.Module):
    """Base class: ``forward(module, batch, outputs)`` returns a scalar added to the loss with ``weight``.

    Args:
        name: logged as ``train/<name>``; unique among a module's terms.
        weight: the term's factor in the total loss.
    """

    def __init__(self, name: str, weight: float = 1.0) -> None:
        super().__init__()
        if not name or "/" in name:
            raise ConfigError(f"A loss term needs a name without '/', got {name!r}.")
        self.name, self.weight = name, float(weight)

    def attach(self, module: nn.Module) -> None:
        """Called once when the term is added to ``module`` (whose network is ``module.net``)."""

    def forward(self, module: nn.Module, batch: Any, outputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class FeatureLossTerm(LossTerm):
    """A term over the outputs of named submodules of ``module.net``, captured by forward hooks each step.

    ``self.features[layer]`` holds the layer's latest output (the whole batch; frames of a ``(B, L, ...)`` batch
    come flattened as the network saw them). Only training-mode forwards are captured.

    Args:
        layers: names in ``module.net.named_modules()``.
        name: see :class:`LossTerm`.
        weight: see :class:`LossTerm`.
    """

    def __init__(self, layers: Sequence[str], name: str, weight: float = 1.0) -> None:
        super().__init__(name, weight)
        if not layers:
            raise ConfigError(f"Loss term '{name}' needs at least one layer name.")
        self.layers = list(layers)
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def attach(self, module: nn.Module) -> None:
        named = dict(module.net.named_modules())
        missing = [n for n in self.layers if n not in named]
        if missing:
            some = ", ".join(n for n in list(named)[1:8] if n)
            raise ConfigError(
                f"Loss term '{self.name}' names layer '{missing[0]}', which the network does not have; expected names "
                f"of net.named_modules() (e.g. {some})."
            )
        for h in self._handles:
            h.remove()
        self._handles = [named[n].register_forward_hook(self._keep(n)) for n in self.layers]

    def feature(self, layer: str) -> torch.Tensor:
        """``layer``'s output in this step.

        Raises:
            ConfigError: when the layer produced none (it is not on the network's forward path).
        """
        if layer not in self.features:
            raise ConfigError(
                f"Loss term '{self.name}' saw no output of '{layer}' in this step; expected layers on the network's "
                "forward path."
            )
        return self.features[layer]

    def _keep(self, layer: str):
        def hook(mod: nn.Module, inputs: Any, output: Any) -> None:
            if mod.training:
                self.features[layer] = output

        return hook


class ActivationPenalty(FeatureLossTerm):
    r"""Mean activation magnitude of the named layers (activation sparsity; fewer and smaller MACs on hardware).

    .. math:: r = \frac{1}{|S|} \sum_{l \in S} \operatorname{mean}\, |a_l|^p

    Args:
        layers: names in ``module.net.named_modules()``.
        p: 1 (L1, sparsity) or 2 (L2).
        name: logged as ``train/<name>``.
        weight: factor in the total loss.
    """

    def __init__(self, layers: Sequence[str], p: int = 1, name: str = "activation_penalty", weight: float = 1e-4):
        super().__init__(layers, name, weight)
        if p not in (1, 2):
            raise ConfigError(f"ActivationPenalty p must be 1 or 2, got {p}.")
        self.p = p

    def forward(self, module: nn.Module, batch: Any, outputs: torch.Tensor) -> torch.Tensor:
        values = [self.features[n].abs().pow(self.p).mean() for n in self.layers if n in self.features]
        if not values:
            raise ConfigError(
                f"Loss term '{self.name}' saw no output of {self.layers} in this step; expected layers on the "
                "network's forward path."
            )
        return torch.stack(values).mean()
