"""The package's backbone networks (registered by short name in :mod:`hwnas_pl.models`).

Every backbone takes ``(num_classes, input_shape)`` first, the same convention as a search space's
``build(arch, num_classes, input_shape)``, so that the DataModule's values are linked into any model instead of
being repeated in configs. Plain PyTorch: nothing here imports Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hwnas_pl.errors import ConfigError


def _check_input_shape(input_shape: Sequence[int], name: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"{name} expects input_shape (channels, height, width) of positive sizes, got {shape}.")
    return shape  # type: ignore[return-value]


class SmallCNN(nn.Module):
    """A small VGG-style CNN for low-resolution images (digits 8×8, CIFAR 32×32).

    ``stages`` blocks of [3×3 conv → BN → ReLU] ×2, each followed by 2×2 max-pooling while the feature map is
    larger than 2×2, then global average pooling and a linear classifier.

    Args:
        num_classes: number of output logits.
        input_shape: (channels, height, width) of one input image.
        width: channels of the first stage; doubled at each stage.
        stages: number of conv stages.
        dropout: dropout before the classifier.

    Example:
        >>> net = SmallCNN(10, (1, 8, 8), width=8)
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, num_classes: int, input_shape: Sequence[int], width: int = 32, stages: int = 2, dropout: float = 0.1
    ) -> None:
        super().__init__()
        channels, height, width_px = _check_input_shape(input_shape, "SmallCNN")
        if num_classes < 1 or width < 1 or stages < 1:
            raise ConfigError(
                f"SmallCNN needs num_classes, width and stages >= 1, got {num_classes}, {width}, {stages}."
            )
        layers: list[nn.Module] = []
        c_in, size = channels, min(height, width_px)
        for i in range(stages):
            c_out = width * 2**i
            for _ in range(2):
                layers += [
                    nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
                c_in = c_out
            if size > 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.features(x)).flatten(1)))


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity or 1×1-conv shortcut (He et al., 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. (2016, §4.2).

    A 3×3 stem, three stages of ``(depth − 2) / 6`` basic blocks with ``width``, 2·``width`` and 4·``width``
    channels (stride 2 into the last two), global pooling, linear.

    ResNet-20 (``depth=20, width=16``) is the reference model RMI-NAS and HW-EvRSNAS pair with NAS-Bench-201's
    three stages; :meth:`stage_modules` names ``layer1``–``layer3``.

    Example:
        >>> net = CifarResNet(10, (1, 16, 16), depth=8, width=4)
        >>> net(torch.zeros(2, 1, 16, 16)).shape, len(net.layer1)
        (torch.Size([2, 10]), 1)
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], depth: int = 20, width: int = 16) -> None:
        super().__init__()
        channels = _check_input_shape(input_shape, "CifarResNet")[0]
        if depth < 8 or (depth - 2) % 6 or width < 1:
            raise ConfigError(
                f"CifarResNet needs depth 6n + 2 (>= 8) and width >= 1, got depth {depth}, width {width}."
            )
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages, c_in = [], width
        for i in range(3):
            c_out = width * 2**i
            stages.append(nn.Sequential(*[BasicBlock(c_in if b == 0 else c_out, c_out, 2 if i and b == 0 else 1)
                                          for b in range(n)]))  # fmt: skip
            c_in = c_out
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def stage_modules(self) -> list[nn.Module]:
        """``layer1``, ``layer2``, ``layer3``: the stage outputs a similarity proxy pairs with."""
        return [self.layer1, self.layer2, self.layer3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.classifier(self.pool(x).flatten(1))


class MLP(nn.Module):
    """A multilayer perceptron over the flattened input.

    Args:
        num_classes: number of output logits.
        input_shape: shape of one input sample.
        hidden: sizes of the hidden layers.
        dropout: dropout after each hidden layer.

    Example:
        >>> MLP(3, (1, 4, 4), hidden=(8,))(torch.zeros(5, 1, 4, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self, num_classes: int, input_shape: Sequence[int], hidden: Sequence[int] = (128,), dropout: float = 0.0
    ) -> None:
        super().__init__()
        features = 1
        for s in input_shape:
            features *= int(s)
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(features, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            features = h
        layers.append(nn.Linear(features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PPGNet(nn.Module):
    """Heart rate from PPG/accelerometer windows: 1-D conv stages, a recurrent layer, a linear head (thesis §4.4).

    The thesis's PPG_NAS base model is "1-D conv → 2 LSTM → FC"; ``cell`` chooses LSTM or the GRU its optimised
    variant uses.

    Args:
        num_classes: number of outputs (1: the heart rate).
        input_shape: (channels, samples) of one window.
        width: channels of the conv stages.
        stages: conv stages, each [conv k=7 stride 2 → BN → ReLU] (the sequence shrinks 2× per stage).
        hidden: hidden size of the recurrent layers.
        layers: recurrent layers.
        cell: ``lstm`` or ``gru``.

    Example:
        >>> PPGNet(1, (5, 1000), width=8, hidden=8)(torch.zeros(2, 5, 1000)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        width: int = 32,
        stages: int = 3,
        hidden: int = 64,
        layers: int = 2,
        cell: str = "lstm",
    ) -> None:
        super().__init__()
        if len(input_shape) != 2:
            raise ConfigError(f"PPGNet expects input_shape (channels, samples), got {tuple(input_shape)}.")
        if cell not in ("lstm", "gru"):
            raise ConfigError(f"PPGNet cell must be 'lstm' or 'gru', got '{cell}'.")
        convs: list[nn.Module] = []
        c_in = int(input_shape[0])
        for _ in range(stages):
            convs += [nn.Conv1d(c_in, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
            c_in = width
        self.features = nn.Sequential(*convs)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(width, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.features(x).transpose(1, 2))
        return self.head(out[:, -1])
