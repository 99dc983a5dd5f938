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


class LoadWeights(ModelTransform):
    """Load a trained network's weights: fine-tuning starts here.

    List it before the transforms that change the network (e.g. ``ReuseTransform`` for SA-training).

    Args:
        path: a Lightning checkpoint of a module of this package (its ``state_dict`` under ``prefix``), or a plain
            state dict saved with ``torch.save``.
        prefix: the network's key prefix in a checkpoint's ``state_dict`` (``net.``; ``supernet.`` for a
            supernet); keys without it are ignored. A plain state dict is taken as it is.
        strict: every parameter and buffer of the network must be in the file, with the same shape.
    """

    def __init__(self, path: str, prefix: str = "net.", strict: bool = True) -> None:
        self.path, self.prefix, self.strict = str(path), prefix, strict

    def apply(self, net: nn.Module) -> nn.Module:
        from hwnas_pl.checkpoint import check_state_dict_matches, read_weights

        source = f"LoadWeights path '{self.path}'"
        weights, writer = read_weights(self.path, self.prefix, source, "a checkpoint or state dict")
        own = net.state_dict()
        weights = {k: v for k, v in weights.items() if k in own}  # the file may hold more (e.g. a loss term's)
        if self.strict:
            check_state_dict_matches(net, weights, source=source, writer=writer)
        net.load_state_dict({k: v for k, v in weights.items() if v.shape == own[k].shape}, strict=False)
        return net
