"""What the PRP-NAS callbacks share: the sub-network sample and its objectives, the (accuracy, cost) directions.

Each callback draws sub-networks with its own seeded generator (same state on every rank), estimates their score
with the supernet's shared weights on held-out batches (statistics summed over ranks) and their cost on rank 0
(broadcast), so every rank takes the same decision.
"""

from __future__ import annotations

import lightning as L
import numpy as np

from hwnas_pl.errors import ConfigError
from hwnas_pl.modules.supernet_module import SupernetModule
from hwnas_pl.prpnas import subspace_size

DIRECTIONS = ("max", "min")  # (accuracy, cost)


def supernet_of(pl_module: L.LightningModule, owner: str) -> SupernetModule:
    if not isinstance(pl_module, SupernetModule):
        raise ConfigError(f"{owner} works on a SupernetModule, got {type(pl_module).__name__}.")
    return pl_module


def check_sample_size(name: str, n: int, module: SupernetModule, owner: str) -> None:
    size = subspace_size(module.alive_indices())
    if n < 1 or n > size:
        raise ConfigError(
            f"{owner} {name}={n} sub-networks, but the {module.space.name} supernet has {size} distinct ones; "
            f"expected 1 <= {name} <= {size}."
        )


def evaluate_sample(
    module: SupernetModule, n: int, rng: np.random.Generator, num_batches: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct sub-networks and their (estimated accuracy, cost) objectives, ``(n, L)`` and ``(n, 2)``.

    After a pruning the alive space may hold fewer than ``n``: then every one of them is evaluated (the callbacks
    refuse an ``n`` beyond the unpruned space when training starts).
    """
    paths = module.sample_subnets(min(n, subspace_size(module.alive_indices())), rng)
    acc = module.estimate_accuracy(paths, module.heldout_batches(num_batches))
    return paths, np.stack([acc, module.costs(paths)], axis=1)


def best_first(objectives: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Indices of the sample sorted by Pareto rank, then by accuracy (best first)."""
    return np.lexsort((-objectives[:, 0], ranks))
