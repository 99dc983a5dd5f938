"""ImageNet16-120: the 16×16 down-sampled ImageNet (Chrabaszcz et al. 2017) restricted to its first 120 classes.

This is the NAS-Bench-201 setting. Layout (``data_dir`` holds the pickles as published)::

    train_data_batch_1 … train_data_batch_10, val_data

each a pickle of ``{'data': uint8 (N, 768), 'labels': [1..1000]}`` (channel-major 3×16×16 rows, 1-based labels).

The validation and test sets are NAS-Bench-201's x-valid and x-test: its published split of the 6,000
ImageNet16-120 validation images into two halves (``hwnas_pl/tables/imagenet16_120_xvalid.txt``, from
AutoDL-Projects' ``imagenet-16-120-test-split.txt``), so accuracies compare with the benchmark's tables.
"""

from __future__ import annotations

import json
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

TRAIN_FILES = [f"train_data_batch_{i}" for i in range(1, 11)]
VAL_FILE = "val_data"
#: NAS-Bench-201's normalisation of ImageNet16 (RGB means and stds of the 0..255 pixels, /255)
IMAGENET16_MEAN = tuple(v / 255 for v in (122.68, 116.66, 104.01))
IMAGENET16_STD = tuple(v / 255 for v in (63.22, 61.26, 65.09))
NB201_XVALID = Path(__file__).resolve().parents[1] / "tables" / "imagenet16_120_xvalid.txt"
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


def read_nb201_split(path: str | Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(x-valid, x-test) positions among the ``n`` validation images, from NAS-Bench-201's split file.

    Reads AutoDL-Projects' ``imagenet-16-120-test-split.txt`` (JSON ``{"xvalid": ["int", [...]], "xtest": ...}``)
    or the package's copy of the x-valid positions (whitespace-separated, ``#`` comments; x-test is the rest).

    Raises:
        DatasetLayoutError: when the file is missing or unreadable, or its positions do not split ``range(n)``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"ImageNet16 split file '{path}' does not exist; expected NAS-Bench-201's split file.")
    text = path.read_text()
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text)
            xvalid, xtest = (np.array([int(v) for v in data[k][1]], dtype=np.int64) for k in ("xvalid", "xtest"))
        else:
            lines = (line.split("#")[0] for line in text.splitlines())
            xvalid = np.array([int(t) for line in lines for t in line.split()], dtype=np.int64)
            xtest = np.setdiff1d(np.arange(n), xvalid)
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise DatasetLayoutError(f"ImageNet16 split file '{path}' is not a list of image positions ({err}).") from None
    joined = np.sort(np.concatenate([xvalid, xtest]))
    if len(joined) != n or not np.array_equal(joined, np.arange(n)):
        raise DatasetLayoutError(
            f"ImageNet16 split file '{path}' splits positions 0..{joined.max()}, but {n} validation images were "
            "loaded (NAS-Bench-201's split is for the 6,000 images of ImageNet16-120); use split: random for others."
        )
    return xvalid, xtest


class ImageNet16DataModule(HWNASDataModule):
    """ImageNet16-120 (or -N) as NAS-Bench-201 trains it.

    Training images get a random 16×16 crop of the 2-pixel padded image and a horizontal flip. ``val_data`` is
    split in two halves, validation and test: NAS-Bench-201's published x-valid / x-test (``split: nb201``, the
    120-class setting), or seeded random halves (``split: random``, any ``num_classes``).

    Args:
        data_dir: folder with the ten training pickles and ``val_data``.
        num_classes: keep the first this many classes (120 for ImageNet16-120; 1000 for all).
        split: ``nb201`` or ``random``.
        split_file: NAS-Bench-201's split file to read instead of the package's copy (AutoDL-Projects'
            ``imagenet-16-120-test-split.txt``).
        seed: seed of the ``random`` split.
        augment: random crop and flip for training.
        batch_size, num_workers, pin_memory: see :class:`~hwnas_pl.datamodules.base.HWNASDataModule`.
    """

    def __init__(
        self,
        data_dir: str = "data/ImageNet16",
        num_classes: int = 120,
        split: str = "nb201",
        split_file: str | None = None,
        seed: int = 42,
        augment: bool = True,
        batch_size: int = 256,
        num_workers: int = 2,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        if not 1 <= num_classes <= 1000:
            raise ConfigError(f"ImageNet16DataModule num_classes must be in 1..1000, got {num_classes}.")
        if split not in ("nb201", "random"):
            raise ConfigError(f"ImageNet16DataModule split must be 'nb201' or 'random', got '{split}'.")
        if split == "nb201" and num_classes != 120:
            raise ConfigError(
                f"ImageNet16DataModule split 'nb201' is NAS-Bench-201's split of the 120-class set, but num_classes is "
                f"{num_classes}; use split: random."
            )
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
        if hp.split == "nb201":
            val_idx, test_idx = read_nb201_split(hp.split_file or NB201_XVALID, len(yv))
            val_idx, test_idx = torch.from_numpy(val_idx), torch.from_numpy(test_idx)
        else:
            test_idx, val_idx = seeded_split(len(yv), len(yv) // 2, hp.seed)
        self.data_train = ArrayImageDataset(x, y, train_tf)
        self.data_val = ArrayImageDataset(xv[val_idx], yv[val_idx], eval_tf)
        self.data_test = ArrayImageDataset(xv[test_idx], yv[test_idx], eval_tf)
