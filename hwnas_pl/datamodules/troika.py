"""TROIKA (IEEE Signal Processing Cup 2015): wrist PPG + accelerometer with ECG heart-rate ground truth.

Layout (``data_dir``, files as published)::

    DATA_01_TYPE01.mat … DATA_12_TYPE02.mat      'sig': rows ECG, PPG1, PPG2, ACC x, y, z at 125 Hz
    DATA_01_TYPE01_BPMtrace.mat …                 'BPM0': heart rate of each 8-s window, shifted by 2 s
    TEST_S01_T01.mat … (optional)                 'sig': rows PPG1, PPG2, ACC x, y, z (no ECG)
    True_S01_T01.mat …                            'BPM0'

Window ``k`` covers samples ``[k·shift·fs, k·shift·fs + window·fs)`` and its target is ``BPM0[k]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import io as sio
from scipy import signal
from torch.utils.data import TensorDataset

from hwnas_pl.datamodules.base import HWNASDataModule, check_positive
from hwnas_pl.datamodules.layout import DatasetLayoutError, require_dir, require_file
from hwnas_pl.errors import ConfigError

FS = 125
TRAIN_PATTERN = re.compile(r"^DATA_(\d+)_TYPE(\d+)\.mat$")
TEST_PATTERN = re.compile(r"^TEST_S(\d+)_T(\d+)\.mat$")
#: which signal rows the ``channels`` option keeps, for (6-row training, 5-row test) files
CHANNELS = {"ppg": ([1, 2], [0, 1]), "ppg_acc": ([1, 2, 3, 4, 5], [0, 1, 2, 3, 4])}
_LAYOUT = "DATA_XX_TYPEYY.mat files with their DATA_XX_TYPEYY_BPMtrace.mat (and optionally TEST_SXX_TYY.mat)"


@dataclass
class Recording:
    """One recording: its name, subject number, signals ``(channels, samples)`` and per-window BPM."""

    name: str
    subject: int
    sig: np.ndarray
    bpm: np.ndarray


def read_mat_variable(path: Path, variable: str) -> np.ndarray:
    """The variable ``variable`` of a MATLAB file as a float64 array, or one sentence naming the file."""
    require_file(path, "TROIKA", f"the MATLAB file '{path.name}'")
    try:
        content = sio.loadmat(path)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise DatasetLayoutError(
            f"TROIKA file '{path}' is not a readable MATLAB file ({type(err).__name__})."
        ) from None
    if variable not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise DatasetLayoutError(f"TROIKA file '{path}' has no variable '{variable}'; it holds {found}.")
    return np.asarray(content[variable], dtype=np.float64)


def read_recording(sig_path: Path, bpm_path: Path, subject: int, channels: str) -> Recording:
    """Read one recording's signal rows (per ``channels``) and its BPM trace."""
    sig = read_mat_variable(sig_path, "sig")
    rows = {6: CHANNELS[channels][0], 5: CHANNELS[channels][1]}.get(sig.shape[0])
    if sig.ndim != 2 or rows is None:
        raise DatasetLayoutError(
            f"TROIKA file '{sig_path}' has 'sig' of shape {sig.shape}; expected 6 rows (ECG, PPG1, PPG2, ACC x/y/z) "
            "or 5 rows (PPG1, PPG2, ACC x/y/z) of 125 Hz samples."
        )
    bpm = read_mat_variable(bpm_path, "BPM0").reshape(-1)
    return Recording(sig_path.stem, subject, sig[rows], bpm)


def find_recordings(data_dir: str | Path, channels: str) -> tuple[list[Recording], list[Recording]]:
    """(training recordings, test recordings) of ``data_dir``, each sorted by name."""
    root = require_dir(data_dir, "TROIKA", _LAYOUT)
    train, test = [], []
    for path in sorted(root.glob("*.mat")):
        if m := TRAIN_PATTERN.match(path.name):
            bpm_path = path.with_name(f"{path.stem}_BPMtrace.mat")
            train.append(read_recording(path, bpm_path, int(m.group(1)), channels))
        elif m := TEST_PATTERN.match(path.name):
            bpm_path = path.with_name(f"True_S{m.group(1)}_T{m.group(2)}.mat")
            test.append(read_recording(path, bpm_path, 100 + int(m.group(1)), channels))
    if not train:
        raise DatasetLayoutError(f"TROIKA data_dir '{root}' holds no DATA_XX_TYPEYY.mat files; expected {_LAYOUT}.")
    return train, test


def bandpass(sig: np.ndarray, low_hz: float, high_hz: float, order: int, fs: float = FS) -> np.ndarray:
    """Zero-phase Butterworth band-pass of each row (second-order sections, forward and backward)."""
    sos = signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, sig, axis=-1)


def window_recording(rec: Recording, window_s: float, shift_s: float, fs: float = FS) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``rec`` into ``(n, channels, window·fs)`` windows aligned with its BPM trace, and the ``(n,)`` targets.

    Raises:
        DatasetLayoutError: when the trace and the signal disagree by more than one window.
    """
    width, step = round(window_s * fs), round(shift_s * fs)
    available = (rec.sig.shape[1] - width) // step + 1 if rec.sig.shape[1] >= width else 0
    if abs(available - len(rec.bpm)) > 1 or available == 0:
        raise DatasetLayoutError(
            f"TROIKA recording '{rec.name}' has {rec.sig.shape[1]} samples ({available} windows of {window_s} s every "
            f"{shift_s} s) but {len(rec.bpm)} BPM values; expected one BPM value per window."
        )
    n = min(available, len(rec.bpm))
    starts = np.arange(n) * step
    windows = np.stack([rec.sig[:, s : s + width] for s in starts])
    return windows, rec.bpm[:n]


class TROIKADataModule(HWNASDataModule):
    """Heart-rate regression windows of TROIKA with leave-subjects-out splits.

    Each recording is band-passed (Butterworth, ``band_hz``, zero phase), cut into ``window_s`` windows every
    ``shift_s`` seconds aligned with its BPM trace, and each window standardised per channel. Samples are
    ``(channels, window·125)`` float tensors with a ``(1,)`` target in BPM; the metric is the average absolute
    error (AAE, BPM).

    Args:
        data_dir: folder with the ``.mat`` files as published.
        val_subjects: training subjects (1..12) held out for validation.
        test_subjects: training subjects held out for testing; empty: the ``TEST_S*`` recordings are the test set
            when present, else the validation subjects.
        channels: ``ppg`` (2 rows) or ``ppg_acc`` (PPG and the 3 accelerometer axes).
        window_s, shift_s: window length and shift in seconds (8 and 2 as the trace).
        band_hz: pass band in Hz (0.4–4 Hz = 24–240 BPM).
        filter_order: Butterworth order.
        batch_size, num_workers, pin_memory: see :class:`~hwnas_pl.datamodules.base.HWNASDataModule`.
    """

    def __init__(
        self,
        data_dir: str = "data/troika",
        val_subjects: list[int] = (11, 12),
        test_subjects: list[int] = (),
        channels: str = "ppg_acc",
        window_s: float = 8.0,
        shift_s: float = 2.0,
        band_hz: tuple[float, float] = (0.4, 4.0),
        filter_order: int = 4,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        if channels not in CHANNELS:
            raise ConfigError(f"TROIKADataModule channels must be one of {sorted(CHANNELS)}, got '{channels}'.")
        check_positive("window_s", window_s, "TROIKADataModule")
        check_positive("shift_s", shift_s, "TROIKADataModule")
        if not 0 < band_hz[0] < band_hz[1] < FS / 2:
            raise ConfigError(f"TROIKADataModule band_hz must satisfy 0 < low < high < {FS / 2} Hz, got {band_hz}.")
        overlap = set(val_subjects) & set(test_subjects)
        if overlap:
            raise ConfigError(f"TROIKADataModule subjects {sorted(overlap)} are both validation and test subjects.")
        self.save_hyperparameters(logger=False)
        require_dir(data_dir, "TROIKA", _LAYOUT)

    @property
    def input_shape(self) -> tuple[int, int]:
        return (len(CHANNELS[self.hparams.channels][0]), round(self.hparams.window_s * FS))

    @property
    def num_classes(self) -> int:
        """Number of regression outputs (one heart rate)."""
        return 1

    def _windows(self, recordings: list[Recording]) -> TensorDataset:
        hp = self.hparams
        xs, ys = [], []
        for rec in recordings:
            rec = Recording(rec.name, rec.subject, bandpass(rec.sig, *hp.band_hz, hp.filter_order), rec.bpm)
            x, y = window_recording(rec, hp.window_s, hp.shift_s)
            x = (x - x.mean(-1, keepdims=True)) / np.maximum(x.std(-1, keepdims=True), 1e-8)
            xs.append(x)
            ys.append(y)
        x = torch.from_numpy(np.concatenate(xs)).float()
        return TensorDataset(x, torch.from_numpy(np.concatenate(ys)).float().unsqueeze(1))

    def build(self) -> None:
        hp = self.hparams
        train, test_files = find_recordings(hp.data_dir, hp.channels)
        subjects = {r.subject for r in train}
        unknown = sorted((set(hp.val_subjects) | set(hp.test_subjects)) - subjects)
        if unknown:
            raise ConfigError(f"TROIKADataModule subjects {unknown} have no recording; found {sorted(subjects)}.")
        held = set(hp.val_subjects) | set(hp.test_subjects)
        fit = [r for r in train if r.subject not in held]
        if not fit:
            raise ConfigError("TROIKADataModule holds every subject out; expected some for training.")
        val = [r for r in train if r.subject in set(hp.val_subjects)]
        test = [r for r in train if r.subject in set(hp.test_subjects)] or test_files or val
        self.data_train = self._windows(fit)
        self.data_val = self._windows(val) if val else None
        self.data_test = self._windows(test) if test else None
        self.recordings = {"train": [r.name for r in fit], "val": [r.name for r in val], "test": [r.name for r in test]}
