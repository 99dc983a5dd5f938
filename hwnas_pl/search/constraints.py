r"""Constraints of a search, pymoo's convention: ``G <= 0`` is feasible.

A search config names its budgets per metric, ``constraints: {latency_ms: {"<=": 4.0}, avm: {"<": 5.0}}``; any
evaluator may compute the metric. Each budget becomes one column of ``G``:

.. math:: G = v - b \;(v \le b), \qquad G = b - v \;(v \ge b)

``"<"`` and ``">"`` are strict: a value equal to the bound is infeasible, and its ``G`` is the smallest positive
float, so that ``G <= 0`` means feasible for every operator. Strategies that handle ``G`` (NSGA-II, the AnalogNAS
EA) receive it in ``tell``; for the others :func:`as_penalty` folds it into the objectives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError

OPERATORS = ("<=", "<", ">=", ">")


@dataclass(frozen=True)
class Constraint:
    """One budget ``metric op bound``.

    Example:
        >>> c = Constraint("latency_ms", "<=", 4.0)
        >>> c.violation(np.array([3.0, 4.0, 5.5])).tolist(), c.feasible(np.array([3.0, 4.0, 5.5])).tolist()
        ([-1.0, 0.0, 1.5], [True, True, False])
        >>> Constraint("avm", "<", 5.0).feasible(np.array([4.9, 5.0])).tolist()
        [True, False]
    """

    metric: str
    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ConfigError(
                f"Constraint on '{self.metric}' has operator '{self.op}'; expected one of {', '.join(OPERATORS)}."
            )
        if not np.isfinite(self.bound):
            raise ConfigError(f"Constraint '{self.metric} {self.op}' needs a finite bound, got {self.bound}.")

    def violation(self, values: np.ndarray) -> np.ndarray:
        """``G`` of ``values``: the signed distance past the bound, ``<= 0`` exactly when the value is feasible."""
        values = np.asarray(values, dtype=float)
        g = values - self.bound if self.op in ("<=", "<") else self.bound - values
        if self.op in ("<", ">"):  # the bound itself breaks a strict budget
            g = np.where(g == 0, np.finfo(float).tiny, g)
        return g

    def feasible(self, values: np.ndarray) -> np.ndarray:
        """Whether each value meets the budget (strict operators exclude the bound)."""
        return self.violation(values) <= 0

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_constraints(spec: Mapping[str, Any] | Sequence[Constraint] | None) -> list[Constraint]:
    """``[Constraint, ...]`` from a config mapping ``{metric: {op: bound, ...}}`` (several ops per metric allowed).

    Raises:
        ConfigError: when an entry is not ``{operator: number}``.
    """
    if spec is None:
        return []
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        return [c if isinstance(c, Constraint) else Constraint(*c) for c in spec]
    out = []
    for metric, rule in spec.items():
        if not isinstance(rule, Mapping) or not rule:
            raise ConfigError(
                f"Constraint on '{metric}' is {rule!r}; expected a mapping of operator to bound, e.g. {{\"<=\": 4.0}}."
            )
        for op, bound in rule.items():
            try:
                bound = float(bound)
            except (TypeError, ValueError):
                raise ConfigError(f"Constraint '{metric} {op}' has bound {bound!r}; expected a number.") from None
            out.append(Constraint(str(metric), str(op), bound))
    return out


def constraint_matrix(rows: Sequence[Mapping[str, float]], constraints: Sequence[Constraint]) -> np.ndarray:
    """``G`` ``(len(rows), len(constraints))`` from metric rows."""
    return np.array(
        [[c.violation(np.array([row[c.metric]]))[0] for c in constraints] for row in rows], dtype=float
    ).reshape(len(rows), len(constraints))


def feasible_rows(rows: Sequence[Mapping[str, float]], constraints: Sequence[Constraint]) -> np.ndarray:
    """Mask of the rows that meet every constraint (all true without constraints)."""
    mask = np.ones(len(rows), dtype=bool)
    for c in constraints:
        mask &= c.feasible(np.array([row[c.metric] for row in rows], dtype=float))
    return mask


def as_penalty(F: np.ndarray, G: np.ndarray | None, weight: float = 1.0) -> np.ndarray:
    r"""Objectives with the constraint violation added to every column (HW-EvRSNAS Eq. 4–5, minimised form).

    .. math:: F'_{ij} = F_{ij} + w \sum_k \max(0, G_{ik})

    HW-EvRSNAS adds :math:`\psi = \Omega - \Psi(\alpha)` to a maximised fitness when the cost :math:`\Psi` is over
    the budget :math:`\Omega`; with ``F`` minimised and :math:`G = \Psi - \Omega` this is the same linear penalty.

    Example:
        >>> as_penalty(np.array([[1.0, 2.0], [1.0, 2.0]]), np.array([[-1.0], [0.5]]), weight=2.0).tolist()
        [[1.0, 2.0], [2.0, 3.0]]
    """
    F = np.asarray(F, dtype=float)
    if G is None or np.size(G) == 0:
        return F
    over = np.clip(np.asarray(G, dtype=float), 0.0, None).sum(axis=1, keepdims=True)
    return F + weight * over
