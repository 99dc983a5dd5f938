"""PRP-NAS (thesis §3.3, Algorithm 2), all its pieces from one place.

- :mod:`hwnas_pl.prpnas`: the maths, no Lightning (fair paths, sampling, the α losses, HVI selection);
- :mod:`hwnas_pl.spaces.supernet`: the weight-sharing supernets of the spaces;
- :mod:`hwnas_pl.modules.supernet_module`: :class:`~hwnas_pl.modules.SupernetModule` (warm-up, search path, α);
- the callbacks, one per file: :mod:`~hwnas_pl.callbacks.pareto_rank_alpha_update`,
  :mod:`~hwnas_pl.callbacks.operation_pruning`, :mod:`~hwnas_pl.callbacks.supernet_export`,
  :mod:`~hwnas_pl.callbacks.supernet_ranking`, sharing
  :mod:`~hwnas_pl.callbacks.prpnas_sampling`;
- configs: ``configs/prpnas_nb201_{digits,cifar10}.yaml`` and the callback group ``configs/callbacks/prpnas.yaml``.

Each callback decides on rank 0 what changes the model and saves its state (generator, α optimiser, what was
pruned when) in the checkpoint. This module is also the callbacks' import path of earlier versions.
"""

from hwnas_pl.callbacks.operation_pruning import OperationPruning
from hwnas_pl.callbacks.pareto_rank_alpha_update import ParetoRankAlphaUpdate
from hwnas_pl.callbacks.prpnas_sampling import (
    DIRECTIONS,
    Reference,
    best_first,
    check_sample_size,
    evaluate_sample,
    supernet_of,
)
from hwnas_pl.callbacks.supernet_export import SupernetExport
from hwnas_pl.callbacks.supernet_ranking import SupernetRanking

__all__ = [
    "DIRECTIONS",
    "OperationPruning",
    "ParetoRankAlphaUpdate",
    "Reference",
    "SupernetExport",
    "SupernetRanking",
    "best_first",
    "check_sample_size",
    "evaluate_sample",
    "supernet_of",
]
