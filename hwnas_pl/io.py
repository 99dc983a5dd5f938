"""Result files are written atomically: a reader (or a run killed mid-write) never sees half a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path`` (one filesystem step).

    Example:
        >>> import tempfile
        >>> p = write_atomic(Path(tempfile.mkdtemp()) / "a" / "x.json", "{}")
        >>> p.read_text(), sorted(q.name for q in p.parent.iterdir())
        ('{}', ['x.json'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    tmp.replace(path)
    return path


def save_figure_atomic(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig`` through a temporary file of the same format, renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    fig.savefig(tmp, **kwargs)
    tmp.replace(path)
    return path
