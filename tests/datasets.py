"""Tiny datasets written in their real on-disk formats, for tests. Later DataModules add their writers here."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_optdigits(path: str | Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write ``n`` rows in the UCI optdigits format (64 pixel counts in 0..16, then the class) to ``path``.

    Returns the (images ``(n, 8, 8)``, labels ``(n,)``) that were written.
    """
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 17, size=(n, 64))
    labels = np.arange(n) % 10
    rows = np.concatenate([pixels, labels[:, None]], axis=1)
    Path(path).write_text("\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    return pixels.reshape(n, 8, 8), labels


def _pickle_dump(obj, path: Path) -> None:
    import pickle

    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: str | Path, per_batch: int = 12, n_test: int = 10, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/`` with five training batches, a test batch and batches.meta (byte keys, as the
    original Python 2 pickles). Image ``i`` of a batch has label ``i % 10`` and every pixel equal to ``i``."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [*[(f"data_batch_{b}", per_batch) for b in range(1, 6)], ("test_batch", n_test)]:
        data = np.repeat(np.arange(n, dtype=np.uint8)[:, None], 3072, axis=1)
        _pickle_dump(
            {b"batch_label": name.encode(), b"labels": [i % 10 for i in range(n)], b"data": data}, folder / name
        )
    _pickle_dump({b"label_names": [f"class{i}".encode() for i in range(10)]}, folder / "batches.meta")
    return folder


def write_cifar100(root: str | Path, n_train: int = 30, n_test: int = 10) -> Path:
    """``root/cifar-100-python/`` with train, test and meta; fine label ``i % 100``, coarse label ``i % 20``."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        data = np.repeat(np.arange(n, dtype=np.uint8)[:, None], 3072, axis=1)
        fine, coarse = [i % 100 for i in range(n)], [i % 20 for i in range(n)]
        _pickle_dump({b"fine_labels": fine, b"coarse_labels": coarse, b"data": data}, folder / name)
    _pickle_dump({b"fine_label_names": [], b"coarse_label_names": []}, folder / "meta")
    return folder


def write_imagenet16(root: str | Path, per_batch: int = 6, n_val: int = 8) -> Path:
    """The ten ``train_data_batch_*`` pickles and ``val_data`` (str keys, 1-based labels ``1 + i·37 % 200``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in [*[(f"train_data_batch_{b}", per_batch) for b in range(1, 11)], ("val_data", n_val)]:
        data = np.repeat(np.arange(n, dtype=np.uint8)[:, None], 768, axis=1)
        _pickle_dump({"data": data, "labels": [1 + (i * 37) % 200 for i in range(n)]}, root / name)
    return root


def write_image_folders(root: str | Path, classes: list[str], train_per_class: int = 4, val_per_class: int = 2) -> Path:
    """``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` of 20×24 RGB images."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{c}_{i}.JPEG", format="JPEG")
    return root


def write_troika(root: str | Path, bpm: dict[str, float], seconds: int = 30, test: dict[str, float] | None = None):
    """TROIKA ``.mat`` files: ``DATA_XX_TYPEYY.mat`` (6 rows at 125 Hz) with ``_BPMtrace.mat``, and optionally
    ``TEST_SXX_TYY.mat`` (5 rows) with ``True_SXX_TYY.mat``. Each recording's PPG is a sine at its constant heart
    rate ``bpm[name]``; the trace has one value per 8-s window every 2 s: ``(seconds − 8) / 2 + 1``."""
    from scipy import io as sio

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(seconds * 125) / 125
    n_windows = (seconds - 8) // 2 + 1

    def rows(rate: float, ecg: bool) -> np.ndarray:
        ppg = np.sin(2 * np.pi * rate / 60 * t)
        acc = 0.1 * np.cos(2 * np.pi * 0.3 * t)
        sig = [ppg, 0.8 * ppg, acc, acc, acc]
        return np.stack(([np.sin(2 * np.pi * rate / 60 * t)] if ecg else []) + sig)

    for name, rate in bpm.items():
        sio.savemat(root / f"{name}.mat", {"sig": rows(rate, True)})
        sio.savemat(root / f"{name}_BPMtrace.mat", {"BPM0": np.full((n_windows, 1), rate)})
    for name, rate in (test or {}).items():
        sio.savemat(root / f"{name}.mat", {"sig": rows(rate, False)})
        s, tt = name.split("_")[1:]
        sio.savemat(root / f"True_{s}_{tt}.mat", {"BPM0": np.full((n_windows, 1), rate)})
    return root
