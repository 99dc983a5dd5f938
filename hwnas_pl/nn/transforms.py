"""Model transforms: hardware features applied to a built network by composition (no Lightning here).

``transforms: [...]`` in a module's config turns its network into the hardware's: analog tiles today
(:class:`~hwnas_pl.analog.transform.AnalogTransform`), reuse layers and quantized layers next. A transform maps the
network once (:meth:`ModelTransform.apply`) and may follow the training through the hooks below, which the
module calls at the matching Lightning hooks; it keeps its own state there (e.g. the analog phase).
"""

from __future__ import annotations

from typing import Any

from torch import nn


class ModelTransform:
    """Base class: :meth:`apply` maps the network; the hooks are no-ops unless overridden."""

    def apply(self, net: nn.Module) -> nn.Module:
        """The transformed network (``net`` may be left untouched or changed in place)."""
        raise NotImplementedError

    def no_weight_decay(self, net: nn.Module) -> set[str]:
        """Names of parameters of the transformed ``net`` that the optimiser must not weight-decay (none)."""
        return set()

    def on_fit_start(self, module: Any) -> None: ...

    def on_train_epoch_start(self, module: Any) -> None: ...

    def on_validation_start(self, module: Any) -> None: ...

    def on_test_start(self, module: Any) -> None: ...

    def after_optimizer_step(self, module: Any, optimizer: Any) -> None: ...

    def on_save_checkpoint(self, module: Any, checkpoint: dict[str, Any]) -> None: ...

    def on_load_checkpoint(self, module: Any, checkpoint: dict[str, Any]) -> None: ...
