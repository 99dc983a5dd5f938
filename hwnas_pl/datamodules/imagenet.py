"""ImageNet (ILSVRC-2012) in its folder layout, with timm's transforms and an optional proxy subset.

Layout (``data_dir``)::

    train/<wnid>/*.JPEG
    val/<wnid>/*.JPEG        (the validation images sorted into class folders, as most copies ship them)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from hwnas_pl.datamodules.base import HWNASDataModule, check_positive
from hwnas_pl.datamodules.layout import DatasetLayoutError, require_dir
from hwnas_pl.errors import ConfigError

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
_LAYOUT = "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG"


def load_rgb(path: Path, dataset: str) -> Image.Image:
    """Open an image file as RGB, or raise one sentence naming the file."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DatasetLayoutError(
            f"{dataset} image '{path}' could not be decoded ({err}); expected a JPEG/PNG."
        ) from None


def scan_class_folders(split_dir: Path, classes: Sequence[str]) -> list[tuple[Path, int]]:
    """(file, class index) for every image under ``split_dir/<class>/``, sorted, for the given classes."""
    samples = []
    for idx, wnid in enumerate(classes):
        folder = split_dir / wnid
        if not folder.is_dir():
            raise DatasetLayoutError(f"ImageNet split '{split_dir}' has no folder '{wnid}'; expected {_LAYOUT}.")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DatasetLayoutError(f"ImageNet class folder '{folder}' holds no .JPEG images.")
        samples += [(p, idx) for p in files]
    return samples


class ImageFolderDataset(Dataset):
    """``(file, label)`` samples decoded to RGB and transformed on access."""

    def __init__(self, samples: list[tuple[Path, int]], transform, dataset: str = "ImageNet") -> None:
        self.samples, self.transform, self.dataset = samples, transform, dataset

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return self.transform(load_rgb(path, self.dataset)), label


class ImageNetDataModule(HWNASDataModule):
    """ILSVRC-2012 from ``train/`` and ``val/`` class folders, optionally a class/image subset for proxy searches.

    Transforms are timm's (:func:`timm.data.create_transform`): random-resized crop, flip, colour jitter and
    optionally RandAugment for training; resize + centre crop (``crop_pct``) for evaluation; ImageNet mean/std.
    ``val/`` serves as validation and test set (ImageNet's test labels are not public).

    Args:
        data_dir: folder holding ``train/`` and ``val/``.
        image_size: side of the network input.
        classes: the first this many classes (sorted WordNet ids), or a list of WordNet ids; ``None``: all.
        images_per_class: keep this many training images per class (seeded); ``None``: all.
        seed: seed of the image subset.
        auto_augment: timm auto-augment policy for training, e.g. ``rand-m9-mstd0.5``; ``None``: off.
        crop_pct: evaluation centre-crop fraction (timm's default 0.875).
        batch_size, num_workers, pin_memory: see :class:`~hwnas_pl.datamodules.base.HWNASDataModule`.
    """

    def __init__(
        self,
        data_dir: str = "data/imagenet",
        image_size: int = 224,
        classes: int | list[str] | None = None,
        images_per_class: int | None = None,
        seed: int = 42,
        auto_augment: str | None = None,
        crop_pct: float = 0.875,
        batch_size: int = 256,
        num_workers: int = 8,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        check_positive("image_size", image_size, "ImageNetDataModule")
        if images_per_class is not None:
            check_positive("images_per_class", images_per_class, "ImageNetDataModule")
        self.save_hyperparameters(logger=False)
        root = require_dir(data_dir, "ImageNet", _LAYOUT)
        require_dir(root / "train", "ImageNet", "one folder per WordNet id (train/<wnid>/*.JPEG)")
        require_dir(root / "val", "ImageNet", "one folder per WordNet id (val/<wnid>/*.JPEG)")
        self.classes = self._select_classes(root / "train", classes)

    @staticmethod
    def _select_classes(train_dir: Path, classes) -> list[str]:
        found = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
        if not found:
            raise DatasetLayoutError(f"ImageNet folder '{train_dir}' has no class folders; expected {_LAYOUT}.")
        if classes is None:
            return found
        if isinstance(classes, int):
            if not 1 <= classes <= len(found):
                raise ConfigError(f"ImageNetDataModule classes must be in 1..{len(found)} (found), got {classes}.")
            return found[:classes]
        unknown = [c for c in classes if c not in found]
        if unknown:
            raise ConfigError(f"ImageNetDataModule classes {unknown} have no folder in '{train_dir}'.")
        return list(classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.hparams.image_size, self.hparams.image_size)

    def build(self) -> None:
        from timm.data import create_transform

        hp = self.hparams
        root = Path(hp.data_dir).expanduser()
        train = scan_class_folders(root / "train", self.classes)
        if hp.images_per_class is not None:
            gen = torch.Generator().manual_seed(hp.seed)
            by_class: dict[int, list] = {}
            for sample in train:
                by_class.setdefault(sample[1], []).append(sample)
            train = []
            for samples in by_class.values():
                keep = torch.randperm(len(samples), generator=gen)[: hp.images_per_class].sort().values
                train += [samples[i] for i in keep.tolist()]
        val = scan_class_folders(root / "val", self.classes)
        train_tf = create_transform(hp.image_size, is_training=True, auto_augment=hp.auto_augment)
        eval_tf = create_transform(hp.image_size, is_training=False, crop_pct=hp.crop_pct)
        self.data_train = ImageFolderDataset(train, train_tf)
        self.data_val = self.data_test = ImageFolderDataset(val, eval_tf)
