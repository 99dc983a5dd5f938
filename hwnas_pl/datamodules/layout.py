"""Checks that a dataset's on-disk layout is there, with one clear sentence when it is not.

Every DataModule calls these before reading, so a wrong ``data_dir`` fails in the main process, naming the path
and the layout that was expected, instead of deep inside a DataLoader worker.
"""

from __future__ import annotations

from pathlib import Path

from hwnas_pl.errors import UserInputError


class DatasetLayoutError(UserInputError, FileNotFoundError):
    """A dataset directory or file is missing or does not have the expected layout."""


def require_dir(path: str | Path, dataset: str, layout: str) -> Path:
    """Return ``path`` as a ``Path`` if it is an existing directory.

    Args:
        path: the directory the user gave.
        dataset: the dataset's name, for the message.
        layout: a short description of what the directory should hold.

    Raises:
        DatasetLayoutError: when ``path`` does not exist or is not a directory.
    """
    p = Path(path).expanduser()
    if not p.is_dir():
        what = "is a file, not a directory" if p.exists() else "does not exist"
        raise DatasetLayoutError(
            f"{dataset} data_dir '{p}' {what}; expected a directory holding {layout} (set it with "
            "--data.init_args.data_dir)."
        )
    return p


def require_file(path: str | Path, dataset: str, what: str) -> Path:
    """Return ``path`` if it is an existing file, else raise one sentence naming it and its role.

    Raises:
        DatasetLayoutError: when ``path`` is not an existing file.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetLayoutError(f"{dataset}: expected {what} at '{p}', but no such file exists.")
    return p
