"""LightningDataModules reading each dataset's real on-disk format."""

from hwnas_pl.datamodules.digits import DigitsDataModule
from hwnas_pl.datamodules.layout import DatasetLayoutError

__all__ = ["DatasetLayoutError", "DigitsDataModule"]
