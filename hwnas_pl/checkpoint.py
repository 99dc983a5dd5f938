"""Checks that a checkpoint's weights fit a model before they are loaded (plain PyTorch).

``torch.nn.Module.load_state_dict`` reports a mismatch as a long list of keys; a user who passed the wrong
``--ckpt_path`` wants one sentence saying which model wrote the checkpoint and what this run expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from hwnas_pl.errors import ConfigError, UserInputError


class CheckpointMismatchError(UserInputError, ValueError):
    """A checkpoint's weights were written by a different model than the one loading them."""


def _tensors(keys: list[str]) -> str:
    return f"{len(keys)} tensor{'s' if len(keys) != 1 else ''}"


def check_state_dict_matches(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint", writer: str | None = None
) -> None:
    """Raise one clear sentence when ``state_dict`` does not have exactly ``model``'s keys and shapes.

    Args:
        model: the model about to load the weights.
        state_dict: the weights (``checkpoint["state_dict"]``).
        source: how to name the checkpoint in the message (its path).
        writer: what wrote the checkpoint (a class path), if known.

    Raises:
        CheckpointMismatchError: with counts and the first example of missing, unexpected and reshaped keys.

    Example:
        >>> check_state_dict_matches(nn.Linear(2, 3), nn.Linear(2, 3).state_dict())
        >>> try:
        ...     check_state_dict_matches(nn.Linear(2, 3), nn.Linear(2, 4).state_dict())
        ... except CheckpointMismatchError as err:
        ...     print(str(err).split(" (e.g.")[0])
        checkpoint does not fit Linear: 2 tensors of other shapes
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    reshaped = [
        k
        for k in own
        if k in state_dict and tuple(getattr(own[k], "shape", ())) != tuple(getattr(state_dict[k], "shape", ()))
    ]
    if not (missing or unexpected or reshaped):
        return
    problems = []
    if missing:
        problems.append(f"{_tensors(missing)} of the model missing (e.g. '{missing[0]}')")
    if unexpected:
        problems.append(f"{_tensors(unexpected)} the model does not have (e.g. '{unexpected[0]}')")
    if reshaped:
        k = reshaped[0]
        problems.append(
            f"{_tensors(reshaped)} of other shapes (e.g. '{k}': {tuple(state_dict[k].shape)} in the checkpoint, "
            f"{tuple(own[k].shape)} in the model)"
        )
    written = f" (it was written by {writer})" if writer else ""
    raise CheckpointMismatchError(
        f"{source}{written} does not fit {type(model).__name__}: {'; '.join(problems)}; expected a checkpoint "
        "written by the same model with the same configuration."
    )


def read_weights(
    path: str | Path, prefix: str = "net.", source: str | None = None, expected: str = "a checkpoint"
) -> tuple[dict[str, torch.Tensor], str | None]:
    """The network weights a file holds, and the class path of the module that wrote it (``None`` if unknown).

    A Lightning checkpoint gives the entries of its ``state_dict`` under ``prefix``, without it; a file holding a
    plain state dict (``torch.save(net.state_dict())``) gives that dict.

    Raises:
        ConfigError: when the file is missing or cannot be read (``source`` names it, ``expected`` says what it
            should be).
    """
    path = Path(path)
    source = source or f"'{path}'"
    if not path.is_file():
        raise ConfigError(f"{source} does not exist; expected {expected}.")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any failure to read is the same user error
        raise ConfigError(f"{source} could not be read as a checkpoint ({err}).") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{source} holds no weights; expected {expected}.")
    if "state_dict" not in saved and saved and all(isinstance(v, torch.Tensor) for v in saved.values()):
        return dict(saved), None
    weights = {k[len(prefix) :]: v for k, v in saved.get("state_dict", {}).items() if k.startswith(prefix)}
    return weights, (saved.get("hyper_parameters") or {}).get("_class_path")
