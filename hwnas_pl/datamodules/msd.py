"""Medical Segmentation Decathlon (Antonelli et al. 2022): any ``TaskXX_Name`` folder, through MONAI.

Layout (``data_dir`` is the task folder, e.g. ``Task09_Spleen``)::

    dataset.json        {"modality": {"0": "CT"}, "labels": {"0": "background", "1": "spleen"},
                         "training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, ...]}
    imagesTr/*.nii.gz
    labelsTr/*.nii.gz
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from hwnas_pl.datamodules.base import HWNASDataModule, check_fraction, holdout_split
from hwnas_pl.datamodules.layout import DatasetLayoutError, require_dir, require_file
from hwnas_pl.errors import ConfigError

_LAYOUT = "dataset.json with imagesTr/*.nii.gz and labelsTr/*.nii.gz (a TaskXX_Name folder of the Decathlon)"


def read_task(task_dir: str | Path) -> tuple[dict, list[dict[str, str]]]:
    """The task's ``dataset.json`` and its training list with absolute file paths, every file checked to exist.

    Raises:
        DatasetLayoutError: when ``dataset.json`` is missing, not JSON, lacks ``training``/``labels``, or names a
            file that does not exist.
    """
    root = require_dir(task_dir, "MSD", _LAYOUT)
    path = require_file(root / "dataset.json", "MSD", "the task description dataset.json")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetLayoutError(f"MSD '{path}' is not valid JSON ({err}).") from None
    for key in ("training", "labels", "modality"):
        if key not in meta:
            raise DatasetLayoutError(f"MSD '{path}' has no '{key}' entry; expected the Decathlon's dataset.json.")
    items = []
    for entry in meta["training"]:
        item = {}
        for key in ("image", "label"):
            if key not in entry:
                raise DatasetLayoutError(f"MSD '{path}' has a training entry without '{key}': {entry}.")
            file = (root / entry[key]).resolve()
            if not file.is_file():
                raise DatasetLayoutError(f"MSD '{path}' names {key} '{entry[key]}', but '{file}' does not exist.")
            item[key] = str(file)
        items.append(item)
    if not items:
        raise DatasetLayoutError(f"MSD '{path}' lists no training cases.")
    return meta, items


def check_volumes(items: Sequence[dict[str, str]]) -> None:
    """Read each NIfTI header (not the voxels): corrupt files and label/image shape mismatches fail here."""
    import nibabel as nib

    for item in items:
        shapes = {}
        for key in ("image", "label"):
            try:
                shapes[key] = nib.load(item[key]).shape
            except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
                raise DatasetLayoutError(f"MSD {key} '{item[key]}' is not a readable NIfTI file ({err}).") from None
        if shapes["label"][:3] != shapes["image"][:3]:
            raise DatasetLayoutError(
                f"MSD label '{item['label']}' has shape {shapes['label']} but its image has {shapes['image']}; "
                "expected the same spatial shape."
            )


class SqueezeLastDim:
    """(C, H, W, 1) -> (C, H, W) for the image and label of a MONAI dict (2-D slice mode)."""

    def __call__(self, data: dict) -> dict:
        return {k: (v[..., 0] if k in ("image", "label") else v) for k, v in data.items()}


class MSDDataModule(HWNASDataModule):
    """One Decathlon task with MONAI's transforms, as 3-D patches or 2-D slices.

    Every case is loaded, made channel-first, oriented to RAS and resampled to ``spacing``; intensities are
    windowed to ``ct_window`` and scaled to [0, 1] for CT, and z-scored over non-zero voxels per channel for MR.
    Training samples ``samples_per_volume`` patches per volume, a share ``pos / (pos + neg)`` centred on
    foreground (``RandCropByPosNegLabeld``); ``mode: 2d`` samples ``patch_size[:2]`` slices instead (patches of
    depth 1). Validation yields whole volumes (batch size 1), which the segmentation module infers with a sliding
    window (slice by slice in 2-D mode). Labels are given as ``(B, 1, ...)`` class maps. MSD's test cases have no
    labels, so ``val_fraction`` of the training cases (seeded) are validation and test set.

    Args:
        data_dir: the task folder (``.../Task09_Spleen``); with ``download: true`` its parent receives the archive.
        task: the task name for ``download`` (e.g. ``Task09_Spleen``); ``None``: the name of ``data_dir``.
        mode: ``3d`` patches or ``2d`` slices.
        patch_size: patch size (x, y, z) in voxels after resampling; 2-D mode uses (x, y).
        spacing: voxel spacing in mm after resampling; ``None``: keep the original.
        ct_window: (min, max) HU of the CT intensity window.
        pos, neg: weights of foreground- and background-centred patches.
        samples_per_volume: patches drawn per loaded volume.
        val_fraction: share of the cases held out (seeded).
        seed: seed of the split.
        cache_rate: share of the pre-processed volumes kept in memory (MONAI ``CacheDataset``); 0: no cache.
        download: fetch the task with MONAI's Decathlon support (MD5-checked) when missing (rank 0).
        batch_size, num_workers, pin_memory: see :class:`~hwnas_pl.datamodules.base.HWNASDataModule`.
    """

    def __init__(
        self,
        data_dir: str = "data/Task09_Spleen",
        task: str | None = None,
        mode: str = "3d",
        patch_size: tuple[int, int, int] = (96, 96, 96),
        spacing: tuple[float, float, float] | None = (1.5, 1.5, 2.0),
        ct_window: tuple[float, float] = (-175.0, 250.0),
        pos: float = 1.0,
        neg: float = 1.0,
        samples_per_volume: int = 4,
        val_fraction: float = 0.2,
        seed: int = 42,
        cache_rate: float = 0.0,
        download: bool = False,
        batch_size: int = 2,
        num_workers: int = 2,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        if mode not in ("2d", "3d"):
            raise ConfigError(f"MSDDataModule mode must be '2d' or '3d', got '{mode}'.")
        if len(patch_size) != 3 or min(patch_size) < 1:
            raise ConfigError(f"MSDDataModule patch_size must be three positive sizes (x, y, z), got {patch_size}.")
        check_fraction("val_fraction", val_fraction, "MSDDataModule")
        if not 0 <= cache_rate <= 1:
            raise ConfigError(f"MSDDataModule cache_rate must be in [0, 1], got {cache_rate}.")
        self.save_hyperparameters(logger=False)
        self.meta: dict | None = None
        self.items: list[dict[str, str]] | None = None
        if not download:
            self.meta, self.items = read_task(data_dir)

    @property
    def num_classes(self) -> int:
        meta = self.meta or read_task(self.hparams.data_dir)[0]
        return len(meta["labels"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        meta = self.meta or read_task(self.hparams.data_dir)[0]
        size = self.hparams.patch_size
        return (len(meta["modality"]), *(size[:2] if self.hparams.mode == "2d" else size))

    def prepare_data(self) -> None:
        if not self.hparams.download:
            return
        from monai.apps import DecathlonDataset

        root = Path(self.hparams.data_dir).expanduser()
        root.parent.mkdir(parents=True, exist_ok=True)
        DecathlonDataset(root.parent, self.hparams.task or root.name, "training", download=True, cache_rate=0.0)

    def transforms(self, train: bool):
        """The MONAI dictionary transforms of the training or evaluation pipeline."""
        from monai import transforms as T

        hp, meta = self.hparams, self.meta
        keys = ["image", "label"]
        steps = [T.LoadImaged(keys), T.EnsureChannelFirstd(keys), T.Orientationd(keys, axcodes="RAS")]
        if hp.spacing is not None:
            steps.append(T.Spacingd(keys, pixdim=hp.spacing, mode=("bilinear", "nearest")))
        if all(str(m).upper() == "CT" for m in meta["modality"].values()):
            steps.append(T.ScaleIntensityRanged("image", *hp.ct_window, b_min=0.0, b_max=1.0, clip=True))
        else:
            steps.append(T.NormalizeIntensityd("image", nonzero=True, channel_wise=True))
        if train:
            size = (*hp.patch_size[:2], 1) if hp.mode == "2d" else tuple(hp.patch_size)
            steps += [
                T.SpatialPadd(keys, spatial_size=size),
                T.RandCropByPosNegLabeld(
                    keys, "label", size, pos=hp.pos, neg=hp.neg, num_samples=hp.samples_per_volume, image_key="image"
                ),
            ]
        steps.append(T.EnsureTyped(keys, track_meta=False))
        if train and hp.mode == "2d":
            steps.append(SqueezeLastDim())
        return T.Compose(steps)

    def collate_fn(self):
        from monai.data import list_data_collate

        return list_data_collate

    def build(self) -> None:
        from monai.data import CacheDataset, Dataset

        hp = self.hparams
        if self.items is None:  # downloaded by prepare_data
            self.meta, self.items = read_task(hp.data_dir)
        items = self.items
        check_volumes(items)
        kept, held = holdout_split(len(items), hp.val_fraction, hp.seed)
        train, val = [items[i] for i in kept], [items[i] for i in held]

        def dataset(data, train_split):
            tf = self.transforms(train_split)
            if hp.cache_rate > 0:
                return CacheDataset(data, tf, cache_rate=hp.cache_rate, num_workers=max(1, hp.num_workers))
            return Dataset(data, tf)

        self.data_train = dataset(train, True)
        self.data_val = self.data_test = dataset(val, False) if val else None

    def val_dataloader(self):
        return self._loader(self.data_val, shuffle=False, split="val", batch_size=1)  # whole volumes

    def test_dataloader(self):
        return self.val_dataloader()
