"""A cost model that records which distributed rank evaluated which architecture (for the sharding test)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hwnas_pl.evaluators.base import CostModel


class RankRecordingCost(CostModel):
    """``n_conv`` (number of conv edges, minimised); appends each evaluated architecture to ``<log_dir>/rank<R>``."""

    directions = {"n_conv": "min"}

    def __init__(self, space, log_dir: str) -> None:
        super().__init__(space)
        self.log_dir = Path(log_dir)

    def _evaluate(self, archs, out) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        rank = int(os.environ.get("RANK", "0"))
        with (self.log_dir / f"rank{rank}.jsonl").open("a") as f:
            for arch in archs:
                f.write(json.dumps(self.space.to_string(arch)) + "\n")
        out["n_conv"] = np.array([sum(op.startswith("nor_conv") for op in a) for a in archs], dtype=float)
