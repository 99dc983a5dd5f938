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
