"""The backbone registry and factory: the package's networks by short name, then any timm model.

The networks themselves are plain ``nn.Module``s in :mod:`hwnas_pl.nn` (``backbones``: SmallCNN, MLP, PPGNet,
CifarResNet;
``segmentation``: UNet, TimmFPN); a config names one by short name (``small_cnn``), by ``class_path``, or a timm
model name (``resnet18``, random init).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.backbones import MLP, CifarResNet, PPGNet, SmallCNN
from hwnas_pl.registry import Registry

BACKBONES: Registry[nn.Module] = Registry("backbone")

#: A class or function called as ``factory(num_classes, input_shape)`` that returns the network. In YAML it is a
#: ``class_path`` with ``init_args`` for everything but those two, which are linked from the DataModule.
BackboneFactory = Callable[[int, Sequence[int]], nn.Module]

BACKBONES.register("small_cnn")(SmallCNN)
BACKBONES.register("mlp")(MLP)
BACKBONES.register("ppgnet")(PPGNet)
BACKBONES.register("resnet_cifar")(CifarResNet)


def list_backbones() -> list[str]:
    """Short names of the package's own backbones (any timm model name is accepted too)."""
    return BACKBONES.names()


def create_backbone(name: str, num_classes: int, input_shape: Sequence[int], **kwargs) -> nn.Module:
    """Build a backbone by short name: the package's own first, then any timm model (random init).

    Args:
        name: a name from :func:`list_backbones` or from ``timm.list_models()``.
        num_classes: number of output logits.
        input_shape: (channels, height, width); timm models get ``in_chans=channels``.
        **kwargs: passed to the factory.

    Raises:
        ConfigError: when ``name`` is neither a package backbone nor a timm model.

    Example:
        >>> create_backbone("small_cnn", 10, (3, 32, 32)).classifier.out_features
        10
    """
    if name in BACKBONES:
        return BACKBONES.create(name, num_classes=num_classes, input_shape=input_shape, **kwargs)
    import timm  # heavy: only when a timm backbone is asked for

    if not timm.is_model(name):
        raise ConfigError(
            f"Unknown backbone '{name}'; expected one of the package's backbones ({', '.join(list_backbones())}) "
            "or a timm model name (see timm.list_models())."
        )
    # Weights are never fetched at run time: users who want pretrained weights load them from a checkpoint.
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=int(input_shape[0]), **kwargs)


def build_backbone(backbone: str | BackboneFactory, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
    """Build ``backbone`` for ``num_classes`` outputs and inputs of ``input_shape``.

    Args:
        backbone: a package backbone name (``small_cnn``, ``mlp``), a timm model name (``resnet18``), a dotted path
            to a class or function taking ``(num_classes, input_shape)``, or such a factory itself.
        num_classes: number of output logits.
        input_shape: (channels, height, width) of one sample.
    """
    if callable(backbone):
        return backbone(num_classes, tuple(input_shape))
    if "." in backbone:
        module_name, _, attr = backbone.rpartition(".")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            raise ConfigError(
                f"Backbone '{backbone}' could not be imported; expected a dotted path to a class or function taking "
                "(num_classes, input_shape)."
            ) from None
        return factory(num_classes, tuple(input_shape))
    return create_backbone(backbone, num_classes, input_shape)
