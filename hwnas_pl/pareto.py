r"""Pareto toolkit: non-dominated sorting, ranks, crowding distance, hypervolume and its improvement, Kendall tau.

Objectives carry a direction. Every function takes ``F`` of shape ``(n_points, n_objectives)`` in the user's units
and ``directions`` (``"min"``/``"max"`` per column, default all ``"min"``) and converts to minimisation itself, so
"maximise accuracy, minimise latency" needs no sign tricks from the caller. Sorting and hypervolume use pymoo's
implementations (moocore underneath).

Pareto ranks follow thesis Eq. 3.3–3.5: rank 1 is the non-dominated set F1, rank 2 the non-dominated set of what
remains, and so on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwnas_pl.errors import ConfigError

Directions = Sequence[str] | None


def as_minimization(F: np.ndarray | Sequence[Sequence[float]], directions: Directions = None) -> np.ndarray:
    """``F`` as a float array with every ``"max"`` column negated, after checking shapes and directions.

    Raises:
        ConfigError: when ``F`` is not 2-D, holds NaN, or ``directions`` does not name one direction per column.

    Example:
        >>> as_minimization([[0.9, 3.0]], ["max", "min"]).tolist()
        [[-0.9, 3.0]]
    """
    F = np.asarray(F, dtype=float)
    if F.ndim == 1 and F.size == 0:
        F = F.reshape(0, len(directions) if directions is not None else 1)
    if F.ndim != 2:
        raise ConfigError(f"Objectives must be a 2-D array (points × objectives), got shape {F.shape}.")
    if directions is None:
        directions = ["min"] * F.shape[1]
    if len(directions) != F.shape[1]:
        raise ConfigError(
            f"Objectives have {F.shape[1]} columns but {len(directions)} directions were given ({list(directions)}); "
            "expected one direction per objective."
        )
    bad = [d for d in directions if d not in ("min", "max")]
    if bad:
        raise ConfigError(f"Unknown objective direction(s) {bad}; expected 'min' or 'max'.")
    if np.isnan(F).any():
        raise ConfigError(f"Objectives hold {int(np.isnan(F).sum())} NaN value(s); expected finite numbers.")
    sign = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    return F * sign


def non_dominated_fronts(F, directions: Directions = None) -> list[np.ndarray]:
    """Indices of the points in each front F1, F2, … (thesis Eq. 3.3–3.5).

    Example:
        >>> [f.tolist() for f in non_dominated_fronts([[1, 2], [2, 1], [2, 2], [3, 3]])]
        [[0, 1], [2], [3]]
    """
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    M = as_minimization(F, directions)
    if len(M) == 0:
        return []
    return [np.asarray(f, dtype=int) for f in NonDominatedSorting().do(M)]


def pareto_ranks(F, directions: Directions = None) -> np.ndarray:
    """Pareto rank of each point, starting at 1 for the non-dominated set.

    Example:
        >>> pareto_ranks([[0.9, 5.0], [0.8, 1.0], [0.7, 6.0]], ["max", "min"]).tolist()
        [1, 1, 2]
    """
    M = as_minimization(F, directions)
    ranks = np.zeros(len(M), dtype=int)
    for k, front in enumerate(non_dominated_fronts(M), start=1):
        ranks[front] = k
    return ranks


def is_non_dominated(F, directions: Directions = None) -> np.ndarray:
    """Boolean mask of the points in the first front."""
    return pareto_ranks(F, directions) == 1


def crowding_distance(F, directions: Directions = None) -> np.ndarray:
    """NSGA-II crowding distance of each point within the set ``F`` (boundary points get ``inf``).

    pymoo's form: per objective, the gap between a point's two neighbours divided by the objective's range,
    averaged over objectives (Deb et al. sum them; the order is the same).

    Example:
        >>> crowding_distance([[0, 4], [1, 2], [2, 1], [4, 0]]).round(3).tolist()  # (2/4 + 3/4) / 2
        [inf, 0.625, 0.625, inf]
    """
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance

    M = as_minimization(F, directions)
    if len(M) <= 2:
        return np.full(len(M), np.inf)
    return np.asarray(calc_crowding_distance(M), dtype=float)


def _ref_point(ref_point, directions: Directions, n_obj: int) -> np.ndarray:
    ref = as_minimization(np.asarray(ref_point, dtype=float).reshape(1, -1), directions)[0]
    if ref.shape[0] != n_obj:
        raise ConfigError(f"The reference point has {ref.shape[0]} coordinates; expected {n_obj}, one per objective.")
    return ref


def hypervolume(F, ref_point, directions: Directions = None) -> float:
    r"""Hypervolume dominated by ``F`` and bounded by ``ref_point`` (both in the user's units and directions).

    Points that do not strictly dominate the reference point contribute nothing.

    .. math:: HV(P) = \lambda\left(\bigcup_{p \in P} [p, r]\right)

    Example:
        >>> hypervolume([[1, 3], [2, 2], [3, 1]], ref_point=[4, 4])
        6.0
        >>> hypervolume([[0.9, 1.0]], ref_point=[0.5, 3.0], directions=["max", "min"])  # (0.9-0.5) * (3-1)
        0.8
    """
    import moocore

    M = as_minimization(F, directions)
    ref = _ref_point(ref_point, directions, M.shape[1])
    M = M[(M < ref).all(axis=1)]
    if len(M) == 0:
        return 0.0
    return float(moocore.hypervolume(M, ref=ref))


def normalized_hypervolume(F, true_front, ref_point, directions: Directions = None) -> float:
    """``HV(F) / HV(true_front)`` with the same reference point (thesis §3.2: 98% for HW-PR-NAS).

    Example:
        >>> normalized_hypervolume([[2, 2]], [[1, 3], [2, 2], [3, 1]], ref_point=[4, 4])
        0.6666666666666666
    """
    best = hypervolume(true_front, ref_point, directions)
    if best <= 0:
        raise ConfigError("The true front dominates no volume below the reference point; choose a worse ref_point.")
    return hypervolume(F, ref_point, directions) / best


def hypervolume_improvement(
    F, ref_point, directions: Directions = None, groups: Sequence[Sequence[int]] | None = None
) -> np.ndarray:
    r"""Hypervolume improvement of each point, or of each group of points, to the set ``F`` (thesis Eq. 3.10).

    .. math:: HVI(S, P) = HV(P \cup S) - HV(P \setminus S)

    With ``groups`` (e.g. the sampled sub-networks that use op *i* in layer *j*), ``S`` is each group; otherwise each
    single point. Since ``S ⊂ P``, ``HV(P ∪ S) = HV(P)``.

    Example:
        >>> hypervolume_improvement([[1, 3], [2, 2], [3, 1]], ref_point=[4, 4]).tolist()
        [1.0, 1.0, 1.0]
        >>> hypervolume_improvement([[1, 3], [2, 2], [3, 1]], [4, 4], groups=[[0, 1], [2]]).tolist()
        [3.0, 1.0]
    """
    M = as_minimization(F, directions)
    ref = _ref_point(ref_point, directions, M.shape[1])
    groups = [[i] for i in range(len(M))] if groups is None else groups
    total = hypervolume(M, ref)
    out = np.empty(len(groups))
    for g, members in enumerate(groups):
        keep = np.ones(len(M), dtype=bool)
        keep[list(members)] = False
        out[g] = total - hypervolume(M[keep], ref)
    return out


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall rank correlation tau-b between two score lists (ties handled), as the thesis reports ranking quality.

    Example:
        >>> kendall_tau([1, 2, 3, 4], [10, 20, 30, 40])
        1.0
        >>> round(kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]), 4)
        0.6667
    """
    from scipy.stats import kendalltau

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ConfigError(f"Kendall tau needs two 1-D lists of the same length, got shapes {a.shape} and {b.shape}.")
    return float(kendalltau(a, b, variant="b").statistic)


def nadir_reference_point(F, directions: Directions = None, margin: float = 0.1) -> np.ndarray:
    """A reference point just beyond the worst value of each objective (in the user's units).

    ``margin`` is a share of each objective's range (thesis §3.2: the "furthest point from the Pareto front").

    Example:
        >>> nadir_reference_point([[0.9, 2.0], [0.5, 4.0]], ["max", "min"], margin=0.5).tolist()
        [0.3, 5.0]
    """
    M = as_minimization(F, directions)
    worst, best = M.max(axis=0), M.min(axis=0)
    span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    ref = worst + margin * span
    sign = np.array([-1.0 if d == "max" else 1.0 for d in (directions or ["min"] * M.shape[1])])
    return ref * sign
