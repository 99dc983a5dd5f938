"""CIFAR-10 and CIFAR-100 from the official python-format batches (Krizhevsky 2009).

Layout (``data_dir`` is the folder that holds, or is, the extracted archive)::

    cifar-10-batches-py/  data_batch_1 … data_batch_5, test_batch, batches.meta
    cifar-100-python/     train, test, meta            (fine_labels and coarse_labels)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hwnas_pl.datamodules.base import HWNASDataModule, seeded_split
from hwnas_pl.datamodules.image_arrays import (
    ArrayImageDataset,
    read_pickle_batch,
    small_image_transform,
    to_image_tensor,
)
from hwnas_pl.datamodules.layout import DatasetLayoutError, require_dir
from hwnas_pl.errors import ConfigError

#: dataset -> (folder, training files, test files, label key of the fine labels, classes)
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
}
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
#: CIFAR-100's own channel statistics, as NAS-Bench-201 normalises it: (129.3, 124.1, 112.4), (68.2, 65.4, 70.4) / 255
CIFAR100_MEAN = tuple(v / 255 for v in (129.3, 124.1, 112.4))
CIFAR100_STD = tuple(v / 255 for v in (68.2, 65.4, 70.4))
#: dataset -> (mean, std) of its training images' channels
CIFAR_STATS = {"cifar10": (CIFAR_MEAN, CIFAR_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}


def find_cifar_folder(data_dir: str | Path, dataset: str) -> Path:
    """The extracted archive's folder: ``data_dir`` itself or ``data_dir/<folder>``."""
    folder = CIFAR_FILES[dataset][0]
    root = require_dir(data_dir, dataset.upper(), f"the extracted '{folder}/' folder")
    if root.name == folder:
        return root
    if (root / folder).is_dir():
        return root / folder
    raise DatasetLayoutError(
        f"{dataset.upper()} data_dir '{root}' has no '{folder}/' folder; expected the extracted python-format archive "
        "(or set download: true)."
    )


def load_cifar(
    data_dir: str | Path, dataset: str, train: bool, labels: str = "fine"
) -> tuple[torch.Tensor, torch.Tensor]:
    """All images ``(N, 3, 32, 32)`` uint8 and labels of the training or test files of CIFAR-10/100."""
    folder, train_files, test_files, fine_key, n_classes = CIFAR_FILES[dataset]
    root = find_cifar_folder(data_dir, dataset)
    key = "coarse_labels" if labels == "coarse" else fine_key
    n_classes = 20 if labels == "coarse" else n_classes
    images, targets = [], []
    for name in train_files if train else test_files:
        path = root / name
        batch = read_pickle_batch(path, dataset.upper(), ["data", key])
        images.append(to_image_tensor(batch["data"], path, dataset.upper(), 32))
        y = batch[key].astype(np.int64)
        if len(y) != len(images[-1]) or y.min() < 0 or y.max() >= n_classes:
            raise DatasetLayoutError(
                f"{dataset.upper()} batch '{path}' has {len(y)} labels in {y.min()}..{y.max()} for "
                f"{len(images[-1])} images; expected one label in 0..{n_classes - 1} per image."
            )
        targets.append(torch.from_numpy(y))
    return torch.cat(images), torch.cat(targets)


class CIFARDataModule(HWNASDataModule):
    """CIFAR-10/100 with the standard augmentation and a seeded validation split.

    Training images get a random 32×32 crop of the 4-pixel zero-padded image, a horizontal flip and optionally
    cutout; all images are normalised with the dataset's own channel statistics (:data:`CIFAR_STATS`).
    ``val_size`` training images are held out
    (seeded) for validation; with ``val_size: 0`` the test set serves as the validation set, as NAS papers report.

    Args:
        data_dir: folder holding (or being) ``cifar-10-batches-py/`` or ``cifar-100-python/``.
        dataset: ``cifar10`` or ``cifar100``.
        labels: ``fine`` (100 classes) or ``coarse`` (20 super-classes); CIFAR-100 only.
        val_size: training images held out for validation.
        seed: seed of the split.
        augment: random crop and flip for training.
        cutout: side of the cutout square applied with the augmentation (0: off; 16 is the usual CIFAR setting).
        download: fetch and checksum the archive into ``data_dir`` when it is missing (rank 0).
        batch_size, num_workers, pin_memory: see :class:`~hwnas_pl.datamodules.base.HWNASDataModule`.
    """

    def __init__(
        self,
        data_dir: str = "data",
        dataset: str = "cifar10",
        labels: str = "fine",
        val_size: int = 5000,
        seed: int = 42,
        augment: bool = True,
        cutout: int = 0,
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 2,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        if dataset not in CIFAR_FILES:
            raise ConfigError(f"CIFARDataModule dataset must be one of {sorted(CIFAR_FILES)}, got '{dataset}'.")
        if labels not in ("fine", "coarse") or (labels == "coarse" and dataset != "cifar100"):
            raise ConfigError(f"CIFARDataModule labels must be 'fine' (or 'coarse' for cifar100), got '{labels}'.")
        if val_size < 0 or cutout < 0:
            raise ConfigError(f"CIFARDataModule val_size and cutout must be 0 or more, got {val_size} and {cutout}.")
        self.save_hyperparameters(logger=False)
        if not download:
            find_cifar_folder(data_dir, dataset)  # fail at construction, before a Trainer starts

    @property
    def num_classes(self) -> int:
        return 20 if self.hparams.labels == "coarse" else CIFAR_FILES[self.hparams.dataset][4]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, 32, 32)

    def prepare_data(self) -> None:
        if not self.hparams.download:
            return
        from torchvision.datasets import CIFAR10, CIFAR100  # verifies the archive's MD5 checksum

        Path(self.hparams.data_dir).mkdir(parents=True, exist_ok=True)
        cls = CIFAR10 if self.hparams.dataset == "cifar10" else CIFAR100
        cls(self.hparams.data_dir, train=True, download=True)

    def build(self) -> None:
        hp = self.hparams
        x, y = load_cifar(hp.data_dir, hp.dataset, train=True, labels=hp.labels)
        x_test, y_test = load_cifar(hp.data_dir, hp.dataset, train=False, labels=hp.labels)
        if hp.val_size >= len(y):
            raise ConfigError(f"CIFARDataModule val_size {hp.val_size} leaves no training images of {len(y)}.")
        mean, std = CIFAR_STATS[hp.dataset]
        train_tf = small_image_transform(hp.augment, 32, 4, mean, std, cutout=hp.cutout)
        eval_tf = small_image_transform(False, 32, 0, mean, std)
        train_idx, val_idx = seeded_split(len(y), hp.val_size, hp.seed)
        self.data_train = ArrayImageDataset(x[train_idx], y[train_idx], train_tf)
        self.data_test = ArrayImageDataset(x_test, y_test, eval_tf)
        self.data_val = ArrayImageDataset(x[val_idx], y[val_idx], eval_tf) if hp.val_size else self.data_test
