"""MNIST and Fashion-MNIST from the official IDX files (LeCun et al. 1998; Xiao et al. 2017).

Layout (``data_dir`` is the folder that holds the four files, plain or gzipped; torchvision's
``<data_dir>/FashionMNIST/raw/`` and ``<data_dir>/MNIST/raw/`` are found too)::

    train-images-idx3-ubyte[.gz]   60,000 × 28 × 28 uint8
    train-labels-idx1-ubyte[.gz]   60,000 uint8 classes 0..9
    t10k-images-idx3-ubyte[.gz]    10,000 × 28 × 28
    t10k-labels-idx1-ubyte[.gz]    10,000

An IDX file is a 4-byte magic number (two zero bytes, the type code 0x08 for unsigned bytes, the number of
dimensions), one big-endian int32 per dimension, then the values in C order. On Debian/Ubuntu
``apt-get install dataset-fashion-mnist`` puts the Fashion-MNIST files under ``/usr/share/datasets/fashion-mnist/``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from hwnas_pl.datamodules.base import HWNASDataModule, seeded_split
from hwnas_pl.datamodules.layout import DatasetLayoutError, require_dir
from hwnas_pl.errors import ConfigError

#: split -> (images file, labels file), without the optional ``.gz``
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file of unsigned bytes (plain or gzipped) into an array of its declared shape.

    Raises:
        DatasetLayoutError: when the file is not gzip-readable, has a wrong magic number or type, or holds fewer
            or more values than its header declares (a truncated download).
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DatasetLayoutError(
            f"IDX file '{path}' cannot be read ({err}); expected an IDX file, plain or gzipped."
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetLayoutError(f"IDX file '{path}' does not start with an IDX magic number (00 00 type ndim).")
    dtype, ndim = raw[2], raw[3]
    if dtype != _UBYTE:
        raise DatasetLayoutError(f"IDX file '{path}' holds type code 0x{dtype:02x}; expected 0x08 (unsigned bytes).")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetLayoutError(f"IDX file '{path}' is truncated inside its header ({len(raw)} bytes).")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DatasetLayoutError(
            f"IDX file '{path}' holds {len(raw) - header} values but its header declares {'×'.join(map(str, shape))} "
            f"= {expected}; the file is truncated or corrupt (download it again)."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_idx_file(root: Path, name: str, dataset: str) -> Path:
    """``root/name`` or ``root/name.gz``."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetLayoutError(f"{dataset} data_dir '{root}' has no '{name}' (or '{name}.gz'); expected {_layout()}.")


def _layout() -> str:
    return (
        "the four official IDX files (" + ", ".join(n for pair in IDX_FILES.values() for n in pair) + ", plain or .gz)"
    )


def load_idx_split(root: Path, split: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` of the ``train`` or ``test`` split."""
    images_path = find_idx_file(root, IDX_FILES[split][0], dataset)
    labels_path = find_idx_file(root, IDX_FILES[split][1], dataset)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetLayoutError(
            f"{dataset} {split} files '{images_path.name}' {images.shape} and '{labels_path.name}' {labels.shape} do "
            "not match; expected N×H×W images and N labels."
        )
    if labels.max(initial=0) > 9:
        raise DatasetLayoutError(f"{dataset} labels '{labels_path}' hold class {labels.max()}; expected 0..9.")
    return images, labels


class IDXDataModule(HWNASDataModule):
    """A 10-class dataset in the IDX format, with a seeded validation split and the official test set.

    Pixels are scaled to [0, 1] and standardised with the dataset's published training mean and std. ``resize``
    and ``channels`` let networks built for CIFAR (3×32×32) take the images unchanged. ``train_size`` keeps a
    seeded subset of the remaining training images (a smaller protocol for CPU runs).

    Args:
        data_dir: folder with the four IDX files (see the module docstring).
        batch_size: global batch size; each of ``world_size`` devices gets ``batch_size // world_size``.
        val_size: training images held out (seeded) for validation; ``0`` validates on the test set.
        train_size: keep only this many of the other training images (seeded); ``null`` keeps all.
        seed: seed of the splits.
        resize: side length to resize the images to (bilinear, antialiased), or ``null`` to keep 28×28.
        channels: 1, or 3 to repeat the gray channel.
        download: fetch the files into ``data_dir`` with torchvision when they are missing (rank 0).
        num_workers, pin_memory: see :class:`~hwnas_pl.datamodules.base.HWNASDataModule`.
    """

    num_classes: int = 10
    name: str = "IDX"
    mean: float = 0.0
    std: float = 1.0
    torchvision_class: str = ""

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        val_size: int = 5000,
        train_size: int | None = None,
        seed: int = 42,
        resize: int | None = None,
        channels: int = 1,
        download: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        owner = type(self).__name__
        if channels not in (1, 3):
            raise ConfigError(f"{owner} channels must be 1 or 3, got {channels}.")
        if val_size < 0 or (train_size is not None and train_size < 1):
            raise ConfigError(
                f"{owner} needs val_size >= 0 and train_size >= 1 or null, got {val_size} and {train_size}."
            )
        if resize is not None and resize < 1:
            raise ConfigError(f"{owner} resize must be a positive side length or null, got {resize}.")
        self.seed = seed
        self.save_hyperparameters(logger=False)
        if not download:
            self.root()  # fail at construction, before any Trainer starts

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one sample as the model receives it."""
        side = self.hparams.resize or 28
        return (self.hparams.channels, side, side)

    def root(self) -> Path:
        """The folder holding the IDX files: ``data_dir`` or torchvision's ``data_dir/<Class>/raw``."""
        root = require_dir(self.hparams.data_dir, self.name, _layout())
        raw = root / self.torchvision_class / "raw"
        if not any((root / f"{IDX_FILES['train'][0]}{gz}").is_file() for gz in ("", ".gz")) and raw.is_dir():
            return raw
        find_idx_file(root, IDX_FILES["train"][0], self.name)
        return root

    def prepare_data(self) -> None:
        if not self.hparams.download:
            return
        import torchvision.datasets  # verifies the files' MD5 checksums

        Path(self.hparams.data_dir).mkdir(parents=True, exist_ok=True)
        cls = getattr(torchvision.datasets, self.torchvision_class)
        for train in (True, False):
            cls(self.hparams.data_dir, train=train, download=True)

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images.copy()).float().div_(255.0).unsqueeze(1)
        if self.hparams.resize and self.hparams.resize != x.shape[-1]:
            x = F.interpolate(x, size=(self.hparams.resize,) * 2, mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        return x.expand(-1, self.hparams.channels, -1, -1).contiguous()

    def build(self) -> None:
        hp, root = self.hparams, self.root()
        images, labels = load_idx_split(root, "train", self.name)
        test_images, test_labels = load_idx_split(root, "test", self.name)
        if hp.val_size >= len(labels):
            raise ConfigError(
                f"{type(self).__name__} val_size {hp.val_size} leaves no training images of {len(labels)}."
            )
        train_idx, val_idx = seeded_split(len(labels), hp.val_size, hp.seed)
        if hp.train_size is not None and hp.train_size < len(train_idx):
            keep, _ = seeded_split(len(train_idx), len(train_idx) - hp.train_size, hp.seed + 1)
            train_idx = train_idx[keep]
        x, y = self._tensor(images), torch.from_numpy(labels.astype(np.int64))
        self.data_train = TensorDataset(x[train_idx], y[train_idx])
        self.data_test = TensorDataset(self._tensor(test_images), torch.from_numpy(test_labels.astype(np.int64)))
        self.data_val = TensorDataset(x[val_idx], y[val_idx]) if hp.val_size else self.data_test


class FashionMNISTDataModule(IDXDataModule):
    """Fashion-MNIST (Zalando, 10 clothing classes, 28×28 gray) from its IDX files; see :class:`IDXDataModule`."""

    name = "Fashion-MNIST"
    mean, std = 0.2860, 0.3530
    torchvision_class = "FashionMNIST"


class MNISTDataModule(IDXDataModule):
    """MNIST handwritten digits (28×28 gray) from its IDX files; see :class:`IDXDataModule`."""

    name = "MNIST"
    mean, std = 0.1307, 0.3081
    torchvision_class = "MNIST"
