"""What the PRP-NAS callbacks share: the sub-network sample and its objectives, the (accuracy, cost) directions.

Each callback draws sub-networks with its own seeded generator (same state on every rank), estimates their score
with the supernet's shared weights on held-out batches (statistics summed over ranks) and their cost on rank 0
(broadcast), so every rank takes the same decision.
"""

from __future__ import annotations

import lightning as L
import numpy as np

from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.base import CostModel, CostModelFactory, build_cost_model
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


def all_alive(module: SupernetModule, paths: np.ndarray) -> np.ndarray:
    """Mask of the ``paths`` whose every op is still alive in the supernet (all of them before any pruning)."""
    alive = module.alive_indices()
    return np.array([all(int(i) in alive[j] for j, i in enumerate(p)) for p in paths], dtype=bool)


class Reference:
    """Ground-truth accuracy of sub-networks from a cost model: a benchmark table or any accuracy model.

    A table (a cost model with an ``archs`` list, e.g. :class:`~hwnas_pl.evaluators.tables.TableCostModel`) can
    only price the architectures it holds, so samples are drawn from those whose ops are all alive.

    Args:
        factory: the cost model, called with the space (and ``input_shape``/``num_classes`` when it takes them).
        metric: its accuracy metric (default: its first).
        module: the supernet module whose space the architectures belong to.
    """

    def __init__(self, factory: CostModelFactory, metric: str | None, module: SupernetModule) -> None:
        self.model: CostModel = build_cost_model(factory, module.space, module.input_shape, module.num_classes)
        self.metric = metric or self.model.metrics[0]
        if self.metric not in self.model.metrics:
            raise ConfigError(
                f"Reference {type(self.model).__name__} has no metric '{self.metric}'; expected one of: "
                f"{', '.join(self.model.metrics)}."
            )
        archs = getattr(self.model, "archs", None)
        self.table = None if archs is None else np.stack([module.space.encode(a) for a in archs]).astype(np.int64)

    def alive_rows(self, module: SupernetModule) -> np.ndarray:
        """The table's paths whose every op is still alive (all of them before any pruning)."""
        return self.table[all_alive(module, self.table)]

    def sample(self, module: SupernetModule, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` distinct alive paths (a table: ``min(n, rows alive)`` of its rows)."""
        if self.table is None:
            return module.sample_subnets(min(n, subspace_size(module.alive_indices())), rng)
        rows = self.alive_rows(module)
        if len(rows) == 0:
            raise ConfigError("Every architecture of the reference table uses a pruned op; nothing is left to rank.")
        return rows[np.sort(rng.choice(len(rows), size=min(n, len(rows)), replace=False))]

    def accuracy(self, module: SupernetModule, paths: np.ndarray) -> np.ndarray:
        """The reference's accuracy of each path."""
        return np.asarray(self.model.evaluate([module.space.decode(p) for p in paths])[self.metric], dtype=float)
