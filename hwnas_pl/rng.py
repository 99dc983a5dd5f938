"""Work done for its own purpose (measuring, counting, building to inspect) leaves the global random state alone.

A run seeded with ``seed_everything`` must not depend on whether a latency table was cached or measured, or on how
many ops a cost model built to count them: :func:`isolated_rng` runs such a block with its own seed and restores
the global torch (CPU and initialised CUDA), NumPy and Python generators afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def isolated_rng(seed: int | None = 0) -> Iterator[None]:
    """Run the block with the global generators seeded by ``seed`` (``None``: as they are), then restore them.

    Example:
        >>> _ = torch.manual_seed(1)
        >>> before = torch.rand(1)
        >>> _ = torch.manual_seed(1)
        >>> with isolated_rng():
        ...     _ = torch.rand(5), np.random.rand(), random.random()
        >>> bool(torch.rand(1) == before)
        True
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        try:
            if seed is not None:
                torch.manual_seed(seed)
                np.random.seed(seed)
                random.seed(seed)
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def rng_states() -> dict[str, object]:
    """The global torch (CPU, and every CUDA device once initialised), NumPy and Python generator states.

    Only tensors, numbers and tuples: checkpoints holding them load with ``torch.load(weights_only=True)``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, object] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },  # fmt: skip
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, object]) -> None:
    """Restore :func:`rng_states` (the parts present; CUDA only when this process has the same devices)."""
    if "torch" in states:
        torch.set_rng_state(torch.as_tensor(states["torch"], dtype=torch.uint8))
    if "numpy" in states:
        n = states["numpy"]
        keys = np.asarray(n["keys"].numpy() if torch.is_tensor(n["keys"]) else n["keys"], dtype=np.uint32)
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
