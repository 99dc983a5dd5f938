"""ApolloScape lane-mark segmentation and scene parsing, frames ordered in time (Wang et al., TPAMI 2019).

Layout, as published (``{root}/{type}_{road id}/{type}/{record id}/{camera id}/{timestamp}_{camera id}{ext}``)::

    ColorImage_road02/ColorImage/Record001/Camera 5/170927_063811892_Camera_5.jpg
    Labels_road02/Label/Record001/Camera 5/170927_063811892_Camera_5_bin.png      (lane marks; also Label_road02)
    road01_ins/ColorImage/Record057/Camera 5/171206_030617006_Camera_5.jpg         (scene parsing release)
    road01_ins/Label/Record057/Camera 5/171206_030617006_Camera_5_bin.png

Label PNGs hold the dataset's label ids; the DataModule maps them to contiguous train ids with the dataset's own
tables (:data:`LANE_LABELS`, :data:`SCENE_LABELS`); ids without a train id become the ignore index 255.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from hwnas_pl.datamodules.base import HWNASDataModule, check_fraction, holdout_split
from hwnas_pl.datamodules.imagenet import load_rgb
from hwnas_pl.datamodules.layout import DatasetLayoutError, require_dir
from hwnas_pl.errors import ConfigError

IGNORE_INDEX = 255
#: lane-mark challenge: (name, label id in the PNGs) in train-id order 0..35 (ApolloScape's laneMarkDetection table;
#: 'noise' 249 and 'ignored' 255 are ignored)
LANE_LABELS = [
    ("void", 0), ("s_w_d", 200), ("s_y_d", 204), ("ds_w_dn", 213), ("ds_y_dn", 209), ("sb_w_do", 206),
    ("sb_y_do", 207), ("b_w_g", 201), ("b_y_g", 203), ("db_w_g", 211), ("db_y_g", 208), ("db_w_s", 216),
    ("s_w_s", 217), ("ds_w_s", 215), ("s_w_c", 218), ("s_y_c", 219), ("s_w_p", 210), ("s_n_p", 232),
    ("c_wy_z", 214), ("a_w_u", 202), ("a_w_t", 220), ("a_w_tl", 221), ("a_w_tr", 222), ("a_w_tlr", 231),
    ("a_w_l", 224), ("a_w_r", 225), ("a_w_lr", 226), ("a_n_lu", 230), ("a_w_tu", 228), ("a_w_m", 229),
    ("a_y_t", 233), ("b_n_sr", 205), ("d_wy_za", 212), ("r_wy_np", 227), ("vom_wy_n", 223), ("om_n_n", 250),
]  # fmt: skip
#: scene parsing: (name, label ids) in train-id order 0..21 (instance groups share their class's train id; others,
#: rover, bridge, tunnel, overpass and unlabeled are ignored)
SCENE_LABELS = [
    ("sky", (17,)), ("car", (33, 161)), ("motorbicycle", (34, 162)), ("bicycle", (35, 163)),
    ("person", (36, 164)), ("rider", (37, 165)), ("truck", (38, 166)), ("bus", (39, 167)),
    ("tricycle", (40, 168)), ("road", (49,)), ("siderwalk", (50,)), ("traffic_cone", (65,)),
    ("road_pile", (66,)), ("fence", (67,)), ("traffic_light", (81,)), ("pole", (82,)), ("traffic_sign", (83,)),
    ("wall", (84,)), ("dustbin", (85,)), ("billboard", (86,)), ("building", (97,)), ("vegatation", (113,)),
]  # fmt: skip


def label_lookup(task: str) -> np.ndarray:
    """A 256-entry table: label id -> train id (255 for ids without one)."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    if task == "lane":
        for train_id, (_, label_id) in enumerate(LANE_LABELS):
            table[label_id] = train_id
    else:
        for train_id, (_, label_ids) in enumerate(SCENE_LABELS):
            table[list(label_ids)] = train_id
    return table


CLASS_NAMES = {"lane": [n for n, _ in LANE_LABELS], "scene": [n for n, _ in SCENE_LABELS]}
_CAMERA = re.compile(r"^(?P<ts>.+)_(?P<camera>Camera_\d+)$")
_LAYOUT = (
    "{type}_{road id}/{type}/{record id}/{camera id}/{timestamp}_{camera id}.jpg (ColorImage_road02/ColorImage/...) "
    "with labels in Labels_{road id}/Label/... or {road id}_ins/Label/..."
)


@dataclass(frozen=True)
class Frame:
    """One camera frame with its label file and its place in time."""

    image: Path
    label: Path
    road: str
    record: str
    camera: str
    timestamp: str

    @property
    def sequence(self) -> tuple[str, str, str]:
        """(road, record, camera): frames of one sequence are consecutive in time."""
        return (self.road, self.record, self.camera)


def _label_dirs(top: Path) -> list[Path]:
    """Where the labels of the image folder ``top`` (``ColorImage_<road>`` or ``<road>_ins``) may live."""
    if top.name.startswith("ColorImage_"):
        road = top.name[len("ColorImage_") :]
        return [top.parent / f"Labels_{road}" / "Label", top.parent / f"Label_{road}" / "Label"]
    return [top / "Label"]


def scan_frames(root: Path, label_suffix: str = "_bin.png") -> list[Frame]:
    """Every frame under ``root`` with its label, sorted by (road, record, camera, timestamp).

    Raises:
        DatasetLayoutError: when no frame is found or a frame has no label file.
    """
    frames = []
    for image in sorted(root.glob("*/ColorImage/*/*/*.jpg")):
        top, record, camera_dir = image.parents[3], image.parents[1].name, image.parent.name
        m = _CAMERA.match(image.stem)
        if m is None:
            raise DatasetLayoutError(
                f"ApolloScape frame '{image}' is not named {{timestamp}}_{{camera id}}.jpg (e.g. "
                "170927_063811892_Camera_5.jpg)."
            )
        candidates = [d / record / camera_dir / f"{image.stem}{label_suffix}" for d in _label_dirs(top)]
        label = next((c for c in candidates if c.is_file()), None)
        if label is None:
            raise DatasetLayoutError(f"ApolloScape frame '{image}' has no label; expected '{candidates[0]}'.")
        road = top.name.removeprefix("ColorImage_").split("_")[0]
        frames.append(Frame(image, label, road, record, m.group("camera"), m.group("ts")))
    if not frames:
        raise DatasetLayoutError(f"ApolloScape data_dir '{root}' holds no frames; expected {_LAYOUT}.")
    frames.sort(key=lambda f: (*f.sequence, f.timestamp))
    return frames


def check_sizes(frames: Sequence[Frame]) -> None:
    """Raise one sentence for the first label whose size differs from its frame's (headers only, no decoding)."""
    for f in frames:
        with Image.open(f.image) as img, Image.open(f.label) as lab:
            if img.size != lab.size:
                raise DatasetLayoutError(
                    f"ApolloScape label '{f.label}' is {lab.size[0]}×{lab.size[1]} but its frame '{f.image.name}' is "
                    f"{img.size[0]}×{img.size[1]}; expected the same size."
                )


def read_label_ids(label: Image.Image, path: Path) -> np.ndarray:
    """The label ids of a label PNG as ``int64`` ``(H, W)``, as the official evaluator reads them.

    Gray ("L") PNGs hold the ids as values; palette ("P") PNGs, like the ground-truth sample of ApolloScape's
    ``dataset-api``, hold them as palette indices (``np.array(Image.open(p))``): converting those to gray would map
    palette colours to grey levels (id 200 would become 255). 16-bit gray PNGs are read as values.

    Raises:
        DatasetLayoutError: for colour labels, or values above 255.
    """
    if label.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        ids = np.asarray(label).astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() > 255):
            raise DatasetLayoutError(
                f"ApolloScape label '{path}' holds values {ids.min()}..{ids.max()}; expected label ids in 0..255."
            )
        return ids
    raise DatasetLayoutError(
        f"ApolloScape label '{path}' is a {label.mode} image; expected one channel of label ids (gray or palette PNG, "
        "the *_bin.png files), not a colour rendering."
    )


def item_starts(sequences: Sequence[object], length: int, stride: int = 1) -> list[int]:
    """First frame of every item: ``length`` consecutive frames of one sequence, starts ``stride`` apart within it.

    ``sequences[i]`` names frame i's sequence; frames of a sequence are consecutive. The stride restarts at each
    sequence's first frame, so a sequence of exactly ``length`` frames always gives one item.
    """
    starts: list[int] = []
    begin = 0
    for end in range(1, len(sequences) + 1):
        if end == len(sequences) or sequences[end] != sequences[begin]:
            starts += range(begin, end - length + 1, max(stride, 1))
            begin = end
    return starts


class ApolloScapeFrames(Dataset):
    """Frames (or (t, t+1) pairs, or clips) of ApolloScape as normalised tensors and train-id label maps.

    Items: ``(image (3, H, W), label (H, W))`` for ``length == 1``; otherwise ``(images (L, 3, H, W),
    labels (L, H, W))`` of ``length`` consecutive frames of one sequence. Training crops are the same for every
    frame of an item, so that frame t and t+1 stay aligned.
    """

    MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    def __init__(
        self,
        frames: Sequence[Frame],
        task: str,
        size: tuple[int, int],
        crop: tuple[int, int] | None = None,
        length: int = 1,
        stride: int = 1,
    ) -> None:
        self.frames, self.size, self.crop, self.length = list(frames), tuple(size), crop, length
        self.lookup = torch.from_numpy(label_lookup(task).astype(np.int64))
        self.starts = item_starts([f.sequence for f in self.frames], length, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def _load(self, frame: Frame) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.from_numpy(np.array(load_rgb(frame.image, "ApolloScape"))).permute(2, 0, 1)
        try:
            with Image.open(frame.label) as lab:
                ids = torch.from_numpy(read_label_ids(lab, frame.label))
        except OSError as err:
            raise DatasetLayoutError(f"ApolloScape label '{frame.label}' could not be decoded ({err}).") from None
        x = F.interpolate(img[None].float() / 255, size=self.size, mode="bilinear", align_corners=False)[0]
        y = F.interpolate(self.lookup[ids][None, None].float(), size=self.size, mode="nearest")[0, 0].long()
        return (x - self.MEAN) / self.STD, y

    def __getitem__(self, i: int):
        items = [self._load(self.frames[self.starts[i] + k]) for k in range(self.length)]
        x, y = torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
        if self.crop is not None:
            (h, w), (ch, cw) = self.size, self.crop
            top, left = int(torch.randint(h - ch + 1, ())), int(torch.randint(w - cw + 1, ()))
            x, y = x[..., top : top + ch, left : left + cw], y[..., top : top + ch, left : left + cw]
        return (x[0], y[0]) if self.length == 1 else (x, y)


class ApolloScapeDataModule(HWNASDataModule):
    """ApolloScape lane-mark segmentation (``task: lane``, 36 classes) or scene parsing (``task: scene``, 22).

    Frames are resized to ``image_size`` (labels nearest-neighbour) and normalised with ImageNet statistics;
    training items are random ``crop_size`` crops. Records are split (seeded) into train and validation, so that
    no sequence is in both; ApolloScape's results are reported on validation, which also serves as test split.

    ``frames`` chooses what an item is: ``single`` frames; ``pairs`` of consecutive frames (t, t+1) of one
    record and camera, for the inter-frame regularizer (items ``(2, 3, H, W)``, ``(2, H, W)``); ``clips`` of
    ``clip_length`` consecutive frames for video inference (validation/test; training stays pairs).

    Args:
        data_dir: the dataset root holding the ``ColorImage_road*`` / ``Labels_road*`` (or ``road*_ins``) folders.
        task: ``lane`` or ``scene``.
        image_size: (height, width) frames are resized to.
        crop_size: (height, width) of training crops; ``None``: whole frames.
        frames: ``single``, ``pairs`` or ``clips``.
        clip_length: frames per clip (``frames: clips``).
        val_records: records (e.g. ``Record001``) for validation; ``None``: ``val_fraction`` of them, seeded.
        val_fraction: share of records held out when ``val_records`` is not given.
        seed: seed of the record split and of nothing else.
        label_suffix: what follows a frame's stem in its label's name.
        batch_size, num_workers, pin_memory: see :class:`~hwnas_pl.datamodules.base.HWNASDataModule`.
    """

    def __init__(
        self,
        data_dir: str = "data/apolloscape",
        task: str = "lane",
        image_size: tuple[int, int] = (512, 640),
        crop_size: tuple[int, int] | None = None,
        frames: str = "single",
        clip_length: int = 8,
        val_records: list[str] | None = None,
        val_fraction: float = 0.2,
        seed: int = 42,
        label_suffix: str = "_bin.png",
        batch_size: int = 8,
        num_workers: int = 4,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        if task not in CLASS_NAMES:
            raise ConfigError(f"ApolloScapeDataModule task must be 'lane' or 'scene', got '{task}'.")
        if frames not in ("single", "pairs", "clips"):
            raise ConfigError(f"ApolloScapeDataModule frames must be 'single', 'pairs' or 'clips', got '{frames}'.")
        if crop_size is not None and (crop_size[0] > image_size[0] or crop_size[1] > image_size[1]):
            raise ConfigError(f"ApolloScapeDataModule crop_size {crop_size} is larger than image_size {image_size}.")
        if clip_length < 2:
            raise ConfigError(f"ApolloScapeDataModule clip_length must be 2 or more, got {clip_length}.")
        check_fraction("val_fraction", val_fraction, "ApolloScapeDataModule")
        self.save_hyperparameters(logger=False)
        require_dir(data_dir, "ApolloScape", _LAYOUT)

    @property
    def num_classes(self) -> int:
        return len(CLASS_NAMES[self.hparams.task])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, *(self.hparams.crop_size or self.hparams.image_size))

    @property
    def class_names(self) -> list[str]:
        return CLASS_NAMES[self.hparams.task]

    def split_records(self, frames: Sequence[Frame]) -> tuple[list[Frame], list[Frame]]:
        """(training frames, validation frames) by record."""
        hp = self.hparams
        records = sorted({(f.road, f.record) for f in frames})
        if hp.val_records is not None:
            unknown = sorted(set(hp.val_records) - {r for _, r in records})
            if unknown:
                raise ConfigError(f"ApolloScapeDataModule val_records {unknown} are not in '{hp.data_dir}'.")
            held = {r for r in records if r[1] in set(hp.val_records)}
        else:
            held = {records[i] for i in holdout_split(len(records), hp.val_fraction, hp.seed)[1]}
        train = [f for f in frames if (f.road, f.record) not in held]
        val = [f for f in frames if (f.road, f.record) in held]
        if not train:
            raise ConfigError("ApolloScapeDataModule holds every record out for validation; expected some to train.")
        return train, val

    def build(self) -> None:
        hp = self.hparams
        frames = scan_frames(Path(hp.data_dir).expanduser(), hp.label_suffix)
        check_sizes(frames)
        train, val = self.split_records(frames)
        size, crop = tuple(hp.image_size), tuple(hp.crop_size) if hp.crop_size else None
        train_length = 1 if hp.frames == "single" else 2
        eval_length = {"single": 1, "pairs": 2, "clips": hp.clip_length}[hp.frames]
        stride = hp.clip_length if hp.frames == "clips" else 1
        self.data_train = ApolloScapeFrames(train, hp.task, size, crop, train_length)
        self.data_val = self.data_test = (
            ApolloScapeFrames(val, hp.task, size, None, eval_length, stride) if val else None
        )
