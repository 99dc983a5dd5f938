"""Handwritten digits (8×8, 10 classes): real data that works offline.

With no ``data_dir`` the 1,797 images that scikit-learn ships are used. With a ``data_dir`` the DataModule reads
the UCI "Optical Recognition of Handwritten Digits" files in their published format: ``optdigits.tra`` and/or
``optdigits.tes``, comma-separated rows of 64 pixel counts in 0..16 followed by the class 0..9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from hwnas_pl.datamodules.base import HWNASDataModule
from hwnas_pl.datamodules.layout import DatasetLayoutError, require_dir
from hwnas_pl.errors import ConfigError

UCI_FILES = ("optdigits.tra", "optdigits.tes")
_LAYOUT = "the UCI files optdigits.tra and/or optdigits.tes (65 comma-separated integers per row)"


def read_optdigits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one UCI ``optdigits`` file into (images ``(N, 8, 8)`` in 0..16, labels ``(N,)``).

    Raises:
        DatasetLayoutError: when the file is not 65 integer columns with pixels in 0..16 and labels in 0..9.
    """
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as err:
        raise DatasetLayoutError(f"Digits file '{path}' is not comma-separated integers ({err}).") from None
    if table.shape[1] != 65 or table.shape[0] == 0:
        raise DatasetLayoutError(
            f"Digits file '{path}' has {table.shape[1]} columns in {table.shape[0]} rows; expected 65 per row "
            "(64 pixel counts and the class)."
        )
    pixels, labels = table[:, :64], table[:, 64]
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise DatasetLayoutError(f"Digits file '{path}' has pixel counts outside 0..16 or classes outside 0..9.")
    return pixels.reshape(-1, 8, 8), labels


def load_digits_arrays(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """All digit images and labels: scikit-learn's bundled copy, or the UCI files found in ``data_dir``."""
    if data_dir is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images.astype(np.int64), bunch.target.astype(np.int64)
    root = require_dir(data_dir, "Digits", _LAYOUT)
    found = [root / name for name in UCI_FILES if (root / name).is_file()]
    if not found:
        raise DatasetLayoutError(
            f"Digits data_dir '{root}' holds neither {UCI_FILES[0]} nor {UCI_FILES[1]}; expected {_LAYOUT}."
        )
    parts = [read_optdigits(p) for p in found]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class DigitsDataModule(HWNASDataModule):
    """Seeded train/val/test splits of the 8×8 handwritten digits.

    Pixels are scaled to [0, 1] and standardised with the training split's mean and std. ``resize`` and
    ``channels`` let networks built for CIFAR (3×32×32) take the digits unchanged.

    Args:
        data_dir: folder with the UCI ``optdigits.tra``/``optdigits.tes``; ``None`` uses scikit-learn's bundled copy.
        batch_size: global batch size; each of ``world_size`` devices gets ``batch_size // world_size``.
        val_fraction: share of the samples held out for validation.
        test_fraction: share of the samples held out for testing.
        seed: seed of the split.
        resize: side length to resize the images to (bilinear), or ``None`` to keep 8×8.
        channels: 1, or 3 to repeat the gray channel.
        num_workers: DataLoader workers.
    """

    num_classes: int = 10
    drop_last_train = False  # every training image counts once per epoch, as this module has always loaded them

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 42,
        resize: int | None = None,
        channels: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        if channels not in (1, 3):
            raise ConfigError(f"DigitsDataModule channels must be 1 or 3, got {channels}.")
        if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ConfigError(
                f"DigitsDataModule needs 0 < val_fraction, 0 <= test_fraction and val_fraction + test_fraction < 1, "
                f"got {val_fraction} and {test_fraction}."
            )
        if resize is not None and resize < 1:
            raise ConfigError(f"DigitsDataModule resize must be a positive side length or null, got {resize}.")
        if data_dir is not None:
            require_dir(data_dir, "Digits", _LAYOUT)  # fail at construction, before any Trainer starts
        self.save_hyperparameters(logger=False)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one sample as the model receives it."""
        side = self.hparams.resize or 8
        return (self.hparams.channels, side, side)

    def split_indices(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Seeded permutation of ``range(n)`` cut into train, val and test index tensors."""
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.seed))
        n_val = max(1, round(n * self.hparams.val_fraction))
        n_test = round(n * self.hparams.test_fraction)
        return perm[n_val + n_test :], perm[:n_val], perm[n_val : n_val + n_test]

    def build(self) -> None:
        images, labels = load_digits_arrays(self.hparams.data_dir)
        x = torch.from_numpy(images).float().div_(16.0).unsqueeze(1)
        if self.hparams.resize:
            x = F.interpolate(x, size=(self.hparams.resize,) * 2, mode="bilinear", align_corners=False)
        y = torch.from_numpy(labels).long()
        train_idx, val_idx, test_idx = self.split_indices(len(y))
        mean, std = x[train_idx].mean(), x[train_idx].std().clamp_min(1e-6)
        x = ((x - mean) / std).expand(-1, self.hparams.channels, -1, -1).contiguous()
        self.data_train = TensorDataset(x[train_idx], y[train_idx])
        self.data_val = TensorDataset(x[val_idx], y[val_idx])
        self.data_test = TensorDataset(x[test_idx], y[test_idx])
