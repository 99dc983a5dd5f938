"""Rank-0 decisions for callbacks and modules under any Lightning strategy (Lightning's ModelCheckpoint habit).

Every callback that changes the model (α, the pruning list, the export, costs) decides on global rank 0 and
broadcasts the decision through ``trainer.strategy``, so ranks never diverge even where floating-point reductions
could differ; files are written on rank 0 and followed by a barrier. With one process both are plain calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def decide_on_rank_zero(trainer: Any, decide: Callable[[], T]) -> T:
    """``decide()`` computed on global rank 0 and broadcast to every rank (``trainer.strategy.broadcast``).

    ``decide`` must not run collective operations (only rank 0 calls it); gather what it needs before.
    """
    value = decide() if trainer is None or trainer.is_global_zero else None
    if trainer is None or trainer.world_size == 1:
        return value
    return trainer.strategy.broadcast(value, src=0)


def write_on_rank_zero(trainer: Any, write: Callable[[], None]) -> None:
    """``write()`` on global rank 0, then a barrier, so no rank reads a file before it exists."""
    if trainer is None or trainer.is_global_zero:
        write()
    if trainer is not None and trainer.world_size > 1:
        trainer.strategy.barrier()
