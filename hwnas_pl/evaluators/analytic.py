"""Exact FLOPs, MACs, parameters and weight memory of an architecture, counted op by op (no measurement)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hwnas_pl.evaluators.base import CostModel, register_cost_model
from hwnas_pl.spaces.base import SearchSpace


@register_cost_model("analytic")
class AnalyticCostModel(CostModel):
    r"""Exact ``flops``, ``macs``, ``params`` and ``memory_mb`` (float32 weights) for one input sample.

    Counted per op of the space's decomposition (:meth:`~hwnas_pl.spaces.base.SearchSpace.latency_ops`), each
    distinct op once, and summed: the whole NAS-Bench-201 space takes about a second.

    See :mod:`hwnas_pl.nn.counting` for what is counted: :math:`\mathrm{FLOPs} = 2\,\mathrm{MACs}` of the
    convolutions and linear layers.

    Args:
        space: the search space.
        input_shape: (channels, height, width) of one input.
        num_classes: classifier outputs.
    """

    directions = {"flops": "min", "macs": "min", "params": "min", "memory_mb": "min"}

    def __init__(self, space: SearchSpace, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10) -> None:
        super().__init__(space)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = num_classes

    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        counts = [self.space.count(a, self.num_classes, self.input_shape) for a in archs]
        counts = np.array([(c.macs, c.params) for c in counts], dtype=float).reshape(-1, 2)
        macs, params = counts[:, 0], counts[:, 1]
        out.update(macs=macs, flops=2 * macs, params=params, memory_mb=params * 4 / 2**20)
