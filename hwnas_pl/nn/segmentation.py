"""Segmentation backbones taking ``(num_classes, input_shape)`` like every backbone of the package.

- :class:`UNet`: MONAI's residual U-Net, 2-D or 3-D from the length of ``input_shape``.
- :class:`TimmFPN`: any timm encoder (``features_only``) with a light FPN-style decoder, 2-D.
Plain PyTorch: nothing here imports Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hwnas_pl.errors import ConfigError


class UNet(nn.Module):
    """MONAI's U-Net with residual units; ``len(input_shape) - 1`` spatial dimensions (2 or 3).

    Args:
        num_classes: output channels (one logit map per class).
        input_shape: (channels, *spatial) of one sample.
        channels: feature channels per level.
        strides: down-sampling stride between levels (``len(channels) - 1`` of them).
        num_res_units: residual units per block.

    Example:
        >>> UNet(3, (1, 16, 16, 16), channels=(4, 8), strides=(2,))(torch.zeros(1, 1, 16, 16, 16)).shape
        torch.Size([1, 3, 16, 16, 16])
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 1,
    ) -> None:
        super().__init__()
        from monai.networks.nets import UNet as MonaiUNet

        dims = len(input_shape) - 1
        if dims not in (2, 3):
            raise ConfigError(f"UNet expects input_shape (channels, H, W) or (channels, X, Y, Z), got {input_shape}.")
        if len(strides) != len(channels) - 1:
            raise ConfigError(f"UNet needs one stride per level transition: {len(channels) - 1}, got {len(strides)}.")
        down = 1
        for st in strides:
            down *= st
        if min(input_shape[1:]) < 2 * down:
            raise ConfigError(
                f"UNet input {tuple(input_shape[1:])} is too small for strides {tuple(strides)}: the deepest level "
                f"needs at least 2×{down} = {2 * down} voxels per side; use fewer levels or larger patches."
            )
        self.net = MonaiUNet(dims, int(input_shape[0]), num_classes, channels, strides, num_res_units=num_res_units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TimmFPN(nn.Module):
    """A timm encoder with a light FPN-style decoder, for 2-D segmentation.

    Each level of the encoder's feature pyramid is projected to ``width`` channels, up-sampled and summed; a 3×3
    conv head and bilinear up-sampling to the input size follow.

    Args:
        num_classes: output channels.
        input_shape: (channels, height, width).
        encoder: a timm model name that supports ``features_only``.
        width: decoder channels.
        pretrained: load the encoder's published weights (needs them in the local timm/HF cache or network).

    Example:
        >>> TimmFPN(5, (3, 64, 64), encoder="resnet18", width=16)(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 5, 64, 64])
    """

    def __init__(
        self, num_classes: int, input_shape: Sequence[int], encoder: str = "resnet18", width: int = 64, pretrained=False
    ) -> None:
        super().__init__()
        import timm

        if len(input_shape) != 3:
            raise ConfigError(f"TimmFPN expects input_shape (channels, height, width), got {tuple(input_shape)}.")
        try:
            self.encoder = timm.create_model(
                encoder, features_only=True, pretrained=pretrained, in_chans=int(input_shape[0])
            )
        except (RuntimeError, ValueError) as err:
            raise ConfigError(f"TimmFPN encoder '{encoder}' cannot give a feature pyramid ({err}).") from None
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in self.encoder.feature_info.channels())
        self.head = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        out = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            out = F.interpolate(out, size=f.shape[-2:], mode="bilinear", align_corners=False) + lat(f)
        return F.interpolate(self.head(out), size=x.shape[-2:], mode="bilinear", align_corners=False)
