"""Small-image datasets stored as pickled arrays (CIFAR, down-sampled ImageNet): reading, augmentation, datasets."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from hwnas_pl.datamodules.layout import DatasetLayoutError, require_file


def read_pickle_batch(path: Path, dataset: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read one pickled batch (Python 2 or 3 pickle, byte or str keys) and return the ``keys`` as arrays.

    Raises:
        DatasetLayoutError: when the file is missing, is not a pickle, or lacks one of ``keys``.
    """
    require_file(path, dataset, f"the pickled batch '{path.name}'")
    try:
        with open(path, "rb") as f:
            raw = pickle.load(f, encoding="latin1")
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise DatasetLayoutError(f"{dataset} batch '{path}' is not a readable pickle ({type(err).__name__}).") from None
    if not isinstance(raw, dict):
        raise DatasetLayoutError(f"{dataset} batch '{path}' holds a {type(raw).__name__}; expected a dict of arrays.")
    raw = {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
    missing = [k for k in keys if k not in raw]
    if missing:
        raise DatasetLayoutError(
            f"{dataset} batch '{path}' has no {', '.join(repr(k) for k in missing)}; it holds {sorted(raw)}."
        )
    return {k: np.asarray(raw[k]) for k in keys}


def to_image_tensor(data: np.ndarray, path: Path, dataset: str, side: int) -> torch.Tensor:
    """``(N, 3·side²)`` uint8 rows (channel-major, as CIFAR stores them) -> ``(N, 3, side, side)`` uint8 tensor."""
    if data.ndim != 2 or data.shape[1] != 3 * side * side or data.dtype != np.uint8:
        raise DatasetLayoutError(
            f"{dataset} batch '{path}' has data of shape {data.shape} and dtype {data.dtype}; expected uint8 rows of "
            f"{3 * side * side} values (3×{side}×{side} images)."
        )
    return torch.from_numpy(data.reshape(-1, 3, side, side).copy())


class Cutout(torch.nn.Module):
    """Zero one ``length``×``length`` square at a uniformly random centre, clipped at the border (DeVries & Taylor)."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.length // 2
        out = img.clone()
        out[..., max(0, cy - half) : min(h, cy + half), max(0, cx - half) : min(w, cx + half)] = 0
        return out


def small_image_transform(
    train: bool,
    side: int,
    padding: int,
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool = True,
    cutout: int = 0,
) -> v2.Compose:
    """uint8 tensor -> normalised float; for training also random crop with ``padding``, flip and optional cutout."""
    steps: list = []
    if train:
        steps.append(v2.RandomCrop(side, padding=padding))
        if flip:
            steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if train and cutout > 0:
        steps.append(Cutout(cutout))
    return v2.Compose(steps)


class ArrayImageDataset(Dataset):
    """Images held in one uint8 tensor ``(N, C, H, W)`` with integer labels, transformed on access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels.")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.images[i]
        return (self.transform(img) if self.transform is not None else img), self.labels[i]
