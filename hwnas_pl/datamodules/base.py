"""What every DataModule of the package shares: the global batch size split over devices, and the loaders."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from hwnas_pl.errors import ConfigError


def check_positive(name: str, value: int | float, owner: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is positive."""
    if value is None or value <= 0:
        raise ConfigError(f"{owner} {name} must be positive, got {value}.")


def check_fraction(name: str, value: float, owner: str) -> None:
    """Raise :class:`ConfigError` unless ``0 <= value < 1``."""
    if not 0 <= value < 1:
        raise ConfigError(f"{owner} {name} must be in [0, 1), got {value}.")


def seeded_split(n: int, n_holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation of ``range(n)`` cut into sorted (kept, held-out) index tensors, ``n_holdout`` held out."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_holdout:].sort().values, perm[:n_holdout].sort().values


def holdout_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """:func:`seeded_split` holding out a share ``fraction`` of ``n`` as lists.

    ``round(fraction · n)`` are held out, at least one when ``fraction > 0`` and never all ``n``.
    """
    n_held = min(n - 1, max(1, round(n * fraction))) if fraction > 0 else 0
    kept, held = seeded_split(n, n_held, seed)
    return kept.tolist(), held.tolist()


class EpochShuffleSampler(RandomSampler):
    """A fresh permutation each epoch from ``seed + epoch`` (DistributedSampler's rule, on one device).

    The order of an epoch depends on its number only, not on the global generator, so a run resumed at an epoch
    boundary sees the batches the uninterrupted run saw. The loader's own generator (worker seeds) is reseeded with
    the epoch too. A ``RandomSampler``, so Lightning still shuffles when it swaps in a DistributedSampler under DDP.
    """

    def __init__(self, data_source: Dataset, seed: int = 0, loader_generator: torch.Generator | None = None) -> None:
        super().__init__(data_source)
        self.seed, self.epoch, self.loader_generator = int(seed), 0, loader_generator

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch."""
        self.epoch = int(epoch)

    def __iter__(self):
        if self.loader_generator is not None:
            self.loader_generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.data_source), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        return iter(order.tolist())


class HWNASDataModule(L.LightningDataModule):
    """Base of the package's DataModules.

    ``batch_size`` is global: each of ``world_size`` devices loads ``batch_size // world_size`` samples per step, so
    a config trains the same on one GPU and on eight. Subclasses fill :attr:`data_train`, :attr:`data_val` and
    :attr:`data_test` in :meth:`build` (called once, on every rank); :meth:`prepare_data` (rank 0 only) downloads.

    Args:
        batch_size: global batch size.
        num_workers: DataLoader worker processes.
        pin_memory: page-locked host memory for faster copies to a GPU.
    """

    #: drop the last, incomplete training batch (a batch of one breaks BatchNorm after global pooling)
    drop_last_train = True

    def __init__(self, batch_size: int = 64, num_workers: int = 0, pin_memory: bool = False) -> None:
        super().__init__()
        check_positive("batch_size", batch_size, type(self).__name__)
        if num_workers < 0:
            raise ConfigError(f"{type(self).__name__} num_workers must be 0 or more, got {num_workers}.")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.batch_size_per_device = batch_size
        self.data_train: Dataset | None = None
        self.data_val: Dataset | None = None
        self.data_test: Dataset | None = None
        self._built = False

    def build(self) -> None:
        """Read the dataset and set ``data_train``, ``data_val``, ``data_test`` (subclasses)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world_size:
            lower = self.batch_size // world_size * world_size
            near = " or ".join(str(v) for v in (lower, lower + world_size) if v > 0)
            raise ConfigError(
                f"Batch size {self.batch_size} is not divisible by the number of devices {world_size}; expected a "
                f"multiple of {world_size}, e.g. {near} (batch_size is the global batch)."
            )
        self.batch_size_per_device = self.batch_size // world_size
        if not self._built:
            self.build()
            self._built = True

    def collate_fn(self):
        """The loaders' ``collate_fn`` (``None``: PyTorch's default)."""
        return None

    def _loader(self, dataset: Dataset | None, shuffle: bool, split: str, batch_size: int | None = None) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__} has no {split} split; call setup() first.")
        batch_size = batch_size or self.batch_size_per_device
        generator = torch.Generator().manual_seed(int(getattr(self, "seed", 0) or 0))
        sampler = EpochShuffleSampler(dataset, int(getattr(self, "seed", 0) or 0), generator) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            generator=generator,  # worker seeds come from here, not from the global generator
            drop_last=shuffle and self.drop_last_train and len(dataset) > batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data_train, shuffle=True, split="train")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.data_val, shuffle=False, split="val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.data_test, shuffle=False, split="test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.data_test, shuffle=False, split="test")
