"""LightningDataModules reading each dataset's real on-disk format."""

from hwnas_pl.datamodules.apolloscape import ApolloScapeDataModule
from hwnas_pl.datamodules.architectures import ArchitectureDataModule
from hwnas_pl.datamodules.base import HWNASDataModule
from hwnas_pl.datamodules.cifar import CIFARDataModule
from hwnas_pl.datamodules.digits import DigitsDataModule
from hwnas_pl.datamodules.imagenet import ImageNetDataModule
from hwnas_pl.datamodules.imagenet16 import ImageNet16DataModule
from hwnas_pl.datamodules.layout import DatasetLayoutError
from hwnas_pl.datamodules.mnist import FashionMNISTDataModule, MNISTDataModule
from hwnas_pl.datamodules.msd import MSDDataModule
from hwnas_pl.datamodules.troika import TROIKADataModule
from hwnas_pl.datamodules.video import VideoDataModule

__all__ = [
    "ApolloScapeDataModule",
    "ArchitectureDataModule",
    "CIFARDataModule",
    "DatasetLayoutError",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "HWNASDataModule",
    "ImageNet16DataModule",
    "ImageNetDataModule",
    "MNISTDataModule",
    "MSDDataModule",
    "TROIKADataModule",
    "VideoDataModule",
]
