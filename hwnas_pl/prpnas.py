r"""PRP-NAS building blocks (thesis §3.3, Algorithm 2): fair paths, sampling, the α losses and HVI op selection.

Plain NumPy/PyTorch; :class:`~hwnas_pl.modules.SupernetModule` and the callbacks in
:mod:`hwnas_pl.callbacks.prpnas` put them in a Lightning loop. A path is a vector of op indices, one per supernet
layer, in the space's integer encoding; ``alive`` lists the op indices each layer still has.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hwnas_pl.errors import ConfigError
from hwnas_pl.pareto import hypervolume

Alive = Sequence[Sequence[int]]


def subspace_size(alive: Alive) -> int:
    """Number of paths through the alive ops."""
    return math.prod(len(ops) for ops in alive)


def fair_paths(alive: Alive, rng: np.random.Generator) -> np.ndarray:
    """FairNAS strict-fairness group: ``K = max_l |alive_l|`` paths using every alive op of every layer once.

    Each layer's ops are shuffled independently and dealt to the ``K`` paths. A layer with fewer than ``K`` ops (the
    MBConv space's stage-first layers have no ``skip``) deals its shuffled ops and then fills the remaining paths
    with ops drawn at random, so each of its ops is used at least once (FairNAS assumes equal layers).

    Returns:
        ``(K, L)`` op indices.
    """
    k = max(len(ops) for ops in alive)
    columns = []
    for ops in alive:
        ops = np.asarray(ops)
        dealt = rng.permutation(ops)
        if len(dealt) < k:
            dealt = np.concatenate([dealt, rng.choice(ops, size=k - len(dealt))])
        columns.append(dealt)
    return np.stack(columns, axis=1)


def sample_paths(alive: Alive, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct paths drawn uniformly from the alive ops.

    Raises:
        ConfigError: when ``n`` exceeds the number of paths the alive ops allow.
    """
    size = subspace_size(alive)
    if n > size:
        raise ConfigError(
            f"Asked for {n} distinct sub-networks, but the supernet's alive ops allow only {size}; "
            f"expected n <= {size}."
        )
    if n * 4 >= size:  # small space: draw without replacement from the enumeration
        every = np.array(list(itertools.product(*alive)), dtype=np.int64).reshape(size, len(alive))
        return every[np.sort(rng.choice(size, size=n, replace=False))]
    seen: dict[tuple[int, ...], None] = {}
    while len(seen) < n:
        path = tuple(int(rng.choice(ops)) for ops in alive)
        seen.setdefault(path, None)
    return np.array(list(seen), dtype=np.int64)


def op_frequency(paths: np.ndarray, num_ops: int) -> np.ndarray:
    r"""``g(op_i, l_j)``: share of ``paths`` using op ``i`` in layer ``j`` (thesis Eq. 3.9), ``(L, num_ops)``."""
    paths = np.asarray(paths, dtype=np.int64)
    freq = np.zeros((paths.shape[1], num_ops))
    for layer in range(paths.shape[1]):
        freq[layer] = np.bincount(paths[:, layer], minlength=num_ops)[:num_ops]
    return freq / max(len(paths), 1)


def masked_softmax(alpha: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Per-layer softmax of ``alpha`` ``(L, K)`` over the alive entries; pruned and padding entries get 0."""
    return torch.softmax(alpha.masked_fill(~alive, float("-inf")), dim=1)


def alpha_hinge_loss(
    probs: torch.Tensor, g: np.ndarray, g_true: np.ndarray, alive: torch.Tensor, margin: float = 0.1
) -> torch.Tensor:
    r"""Hinge loss between the op counts α predicts and the true ones (thesis Eq. 3.9, margin ``m``).

    .. math::
        L = \sum_j \sum_{i \ne \hat a_j:\ g(o_i,l_j) > \hat g(o_i,l_j)}
            \max[0, m - (\hat\alpha_{\hat a_j j} - \hat\alpha_{ij})]

    ``g`` counts op ``i`` in layer ``j`` among the top-N sub-networks by α's predicted score :math:`P_s`,
    :math:`\hat g` among the top-N by the ground truth (Pareto ranks of accuracy and cost, Algorithm 2 step 1), and
    :math:`\hat a_j = \arg\max_i \hat g(o_i, l_j)` is the op the true top-N use most (ties: larger α). Every op
    that α over-uses (more frequent in its top-N than in the true top-N) must trail the true favourite by ``m``, so
    the loss is zero exactly when no op is over-used or each over-used one trails by the margin. The printed
    equation is garbled [AMBIG]; this reading keeps its parts (g, ĝ, the favourite op, the margin) and gives a
    gradient whenever α's top-N differs from the true top-N, also when α's favourite already leads.
    """
    g = torch.as_tensor(g, dtype=probs.dtype, device=probs.device)
    g_true = torch.as_tensor(g_true, dtype=probs.dtype, device=probs.device)
    key = g_true.masked_fill(~alive, -1.0) + 1e-6 * probs.detach()  # ties between true counts: larger α
    fav = key.argmax(dim=1, keepdim=True)
    over_used = (g > g_true) & alive
    over_used.scatter_(1, fav, False)
    gaps = margin - (probs.gather(1, fav) - probs)
    return (F.relu(gaps) * over_used).sum()


def path_scores(probs: torch.Tensor, paths: np.ndarray) -> torch.Tensor:
    r"""Predicted Pareto score of each path, :math:`P_s = \sum_{o \in s} \hat\alpha_o` (thesis §3.3), shape ``(n,)``."""
    index = torch.as_tensor(np.asarray(paths), dtype=torch.long, device=probs.device)
    layers = torch.arange(probs.shape[0], device=probs.device)
    return probs[layers, index].sum(dim=1)


def listwise_rank_loss(scores: torch.Tensor, ranks: Sequence[int], temperature: float = 1.0) -> torch.Tensor:
    r"""Listwise (ListNet) cross-entropy between the scores' and the Pareto ranks' top-one distributions.

    .. math:: L = -\sum_s \mathrm{softmax}(-r / T)_s \,\log \mathrm{softmax}(P)_s

    Rank 1 is best, so the target gives the most mass to the first front; ``T`` sets how sharply.
    """
    ranks = torch.as_tensor(np.asarray(ranks), dtype=scores.dtype, device=scores.device)
    target = torch.softmax(-ranks / temperature, dim=0)
    return -(target * torch.log_softmax(scores, dim=0)).sum()


def greedy_hvi_selection(
    F: np.ndarray, ref_point: Sequence[float], directions: Sequence[str], candidates: Sequence[int], n: int
) -> list[int]:
    r"""Pick ``n`` of ``candidates`` one at a time, each with the largest hypervolume improvement (thesis Eq. 3.10).

    .. math:: s^\* = \arg\max_{s} HV(P \cup \{s\}) - HV(P)

    over the points already picked ``P``. Ties (a dominated point adds nothing) go to the earlier candidate, so pass
    candidates sorted best first.
    """
    F = np.asarray(F, dtype=float)
    chosen: list[int] = []
    remaining = list(candidates)
    while remaining and len(chosen) < n:
        base = hypervolume(F[chosen], ref_point, directions) if chosen else 0.0
        gains = [hypervolume(F[chosen + [i]], ref_point, directions) - base for i in remaining]
        best = int(np.argmax(gains))  # first maximum: the better-sorted candidate wins a tie
        chosen.append(remaining.pop(best))
    return chosen
