"""ImageNet16-120: the 16×16 down-sampled ImageNet (Chrabaszcz et al. 2017) restricted to its first 120 classes.

This is the NAS-Bench-201 setting. Layout (``data_dir`` holds the pickles as published)::

    train_data_batch_1 … train_data_batch_10, val_data

each a pickle of ``{'data': uint8 (N, 768), 'labels': [1..1000]}`` (channel-major 3×16×16 rows, 1-based labels).
"""

from __future__ import annotations

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

TRAIN_FILES = [f"train_data_batch_{i}" for i in range(1, 11)]
VAL_FILE = "val_data"
#: NAS-Bench-201's normalisation of ImageNet16 (RGB means and stds of the 0..255 pixels, /255)
IMAGENET16_MEAN = tuple(v / 255 for v in (122.68, 116.66, 104.01))
IMAGENET16_STD = tuple(v / 255 for v in (63.22, 61.26, 65.09))
_LAYOUT = f"the down-sampled ImageNet pickles {TRAIN_FILES[0]} … {TRAIN_FILES[-1]} and {VAL_FILE}"


def load_imagenet16(data_dir, files: list[str], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 3, 16, 16)`` and 0-based labels of the samples whose 1-based label is ≤ ``num_classes``."""
    root = require_dir(data_dir, "ImageNet16", _LAYOUT)
    images, labels = [], []
    for name in files:
        path = root / name
        batch = read_pickle_batch(path, "ImageNet16", ["data", "labels"])
        y = batch["labels"].astype(np.int64).reshape(-1)
        if len(y) != len(batch["data"]) or (len(y) and (y.min() < 1 or y.max() > 1000)):
            raise DatasetLayoutError(
                f"ImageNet16 batch '{path}' has {len(y)} labels for {len(batch['data'])} images or labels outside "
                "1..1000; expected one 1-based label per image."
            )
        keep = y <= num_classes
        images.append(to_image_tensor(batch["data"], path, "ImageNet16", 16)[torch.from_numpy(keep)])
        labels.append(torch.from_numpy(y[keep] - 1))
    return torch.cat(images), torch.cat(labels)


class ImageNet16DataModule(HWNASDataModule):
    """ImageNet16-120 (or -N) as NAS-Bench-201 trains it.

    Training images get a random 16×16 crop of the 2-pixel padded image and a horizontal flip. ``val_data`` is
    split (seeded) in two halves, validation and test, as NAS-Bench-201's x-valid / x-test.

    Args:
        data_dir: folder with the ten training pickles and ``val_data``.
        num_classes: keep the first this many classes (120 for ImageNet16-120; 1000 for all).
        seed: seed of the validation/test split.
        augment: random crop and flip for training.
        batch_size, num_workers, pin_memory: see :class:`~hwnas_pl.datamodules.base.HWNASDataModule`.
    """

    def __init__(
        self,
        data_dir: str = "data/ImageNet16",
        num_classes: int = 120,
        seed: int = 42,
        augment: bool = True,
        batch_size: int = 256,
        num_workers: int = 2,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        if not 1 <= num_classes <= 1000:
            raise ConfigError(f"ImageNet16DataModule num_classes must be in 1..1000, got {num_classes}.")
        self.save_hyperparameters(logger=False)
        require_dir(data_dir, "ImageNet16", _LAYOUT)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, 16, 16)

    @property
    def num_classes(self) -> int:
        return self.hparams.num_classes

    def build(self) -> None:
        hp = self.hparams
        x, y = load_imagenet16(hp.data_dir, TRAIN_FILES, hp.num_classes)
        xv, yv = load_imagenet16(hp.data_dir, [VAL_FILE], hp.num_classes)
        train_tf = small_image_transform(hp.augment, 16, 2, IMAGENET16_MEAN, IMAGENET16_STD)
        eval_tf = small_image_transform(False, 16, 0, IMAGENET16_MEAN, IMAGENET16_STD)
        test_idx, val_idx = seeded_split(len(yv), len(yv) // 2, hp.seed)
        self.data_train = ArrayImageDataset(x, y, train_tf)
        self.data_val = ArrayImageDataset(xv[val_idx], yv[val_idx], eval_tf)
        self.data_test = ArrayImageDataset(xv[test_idx], yv[test_idx], eval_tf)
