r"""The listwise Pareto-ranking loss of HW-PR-NAS (thesis §3.2, Eq. 3.6–3.7), a ListMLE over Pareto ranks.

For a batch B of architectures with predicted scores :math:`f(a)` and Pareto ranks (non-dominated sorting of their
true objectives within the batch, Eq. 3.3–3.5), order the batch by rank, :math:`a^{(1)}, \dots, a^{(|B|)}`, and

.. math:: L(B) = \sum_{i=1}^{|B|} \Big( -s(a^{(i)}) + \log \sum_{j=i}^{|B|} \exp s(a^{(j)}) \Big)

the Plackett–Luce negative log-likelihood of that order: minimising it puts better fronts first. ``on`` chooses
``s``: ``"scores"`` (standard ListMLE, :math:`s = f`; the default) or ``"softmax"`` (Eq. 3.6 as printed,
:math:`s = \mathrm{softmax}_B(f)`, whose values in (0, 1) give the loss a much smaller range; kept for fidelity).

**Ties** (architectures of the same front): their order is not given by the ranks, so within a front they are
taken in the order of the current scores, highest first. This is the order of highest likelihood among those the
ranks allow, so the loss never pushes apart two architectures of one front.
"""

from __future__ import annotations

import torch

from hwnas_pl.errors import ConfigError

ON = ("scores", "softmax")


def rank_order(ranks: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Indices sorting by Pareto rank (1 first), ties by descending score.

    Example:
        >>> rank_order(torch.tensor([2, 1, 1, 3]), torch.tensor([0.0, 0.1, 0.5, 9.0])).tolist()
        [2, 1, 0, 3]
    """
    by_score = torch.argsort(scores.detach(), descending=True, stable=True)
    by_rank = torch.argsort(ranks[by_score], stable=True)
    return by_score[by_rank]


def listwise_pareto_loss(scores: torch.Tensor, ranks: torch.Tensor, on: str = "scores") -> torch.Tensor:
    """Eq. 3.7 of one batch (a 0-d tensor; see the module docstring).

    Example:
        >>> s = torch.tensor([2.0, 0.0, 1.0])
        >>> round(float(listwise_pareto_loss(s, torch.tensor([1, 3, 2]))), 4)  # order 0, 2, 1
        0.7209

    Raises:
        ConfigError: for an unknown ``on`` or scores and ranks of different lengths.
    """
    if on not in ON:
        raise ConfigError(f"listwise_pareto_loss on must be one of {', '.join(ON)}, got '{on}'.")
    scores = scores.reshape(-1)
    if scores.shape != ranks.reshape(-1).shape:
        raise ConfigError(f"listwise_pareto_loss got {scores.numel()} scores for {ranks.numel()} ranks.")
    s = torch.softmax(scores, 0) if on == "softmax" else scores
    ordered = s[rank_order(ranks.reshape(-1), scores)]
    # log sum_{j >= i} exp s_j: a reversed cumulative logsumexp
    tail = torch.logcumsumexp(ordered.flip(0), 0).flip(0)
    return (tail - ordered).sum()
