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
