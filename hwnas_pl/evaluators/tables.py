"""Per-architecture metrics from a user's CSV or JSON table (published device tables plug in here)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.base import CostModel, register_cost_model
from hwnas_pl.spaces.base import SearchSpace

#: the tables shipped with the package
PACKAGE_TABLES = Path(__file__).resolve().parents[1] / "tables"


@register_cost_model("table")
class TableCostModel(CostModel):
    """Per-architecture metrics from a user's CSV or JSON file, so published device tables plug in.

    CSV: a header row with an ``arch`` column (the space's string) and one column per metric. JSON: a list of
    objects with ``arch`` and the metric keys, as ``pareto_front.json`` files are written.

    The tables shipped with the package (``hwnas_pl/tables/``, e.g. ``nb201_fashionmnist.csv``, the Fashion-MNIST
    NAS-Bench-201 table of ``benchmarks/nb201_fashionmnist_table.py``) are found by file name alone.

    Args:
        space: the search space the strings belong to.
        path: the table file, or the name of a table shipped with the package.
        directions: metric -> ``"min"``/``"max"`` for the columns to use (default: every numeric column, minimised).
    """

    def __init__(self, space: SearchSpace, path: str | Path, directions: Mapping[str, str] | None = None) -> None:
        super().__init__(space)
        self.path = Path(path)
        if not self.path.is_file() and (PACKAGE_TABLES / self.path.name).is_file() and self.path.parent == Path("."):
            self.path = PACKAGE_TABLES / self.path.name
        if not self.path.is_file():
            raise UserInputError(
                f"Cost table '{self.path}' does not exist; expected a CSV or JSON file with an 'arch' column."
            )
        rows = self._read_rows()
        if not rows or "arch" not in rows[0]:
            raise UserInputError(
                f"Cost table '{self.path}' has no 'arch' column; expected one naming each architecture."
            )
        columns = [k for k in rows[0] if k != "arch"]
        numeric = [c for c in columns if _is_number(rows[0][c])]  # text columns (a protocol name) are not metrics
        self.directions = dict(directions) if directions else {c: "min" for c in numeric}
        missing = [m for m in self.directions if m not in columns]
        if missing:
            raise ConfigError(f"Cost table '{self.path}' has no column '{missing[0]}'; its columns are {columns}.")
        self._values: dict[Any, dict[str, float]] = {}
        for line, row in enumerate(rows, start=2):
            arch = space.validate(str(row["arch"]))
            try:
                self._values[arch] = {m: float(row[m]) for m in self.directions}
            except (TypeError, ValueError):
                raise UserInputError(
                    f"Cost table '{self.path}' row {line} holds a value that is not a number."
                ) from None

    @property
    def archs(self) -> list[Any]:
        """The architectures the table holds, in its row order."""
        return list(self._values)

    def _read_rows(self) -> list[dict[str, Any]]:
        if self.path.suffix.lower() == ".json":
            data = json.loads(self.path.read_text())
            return data if isinstance(data, list) else []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        for arch in archs:
            if arch not in self._values:
                raise ConfigError(f"Cost table '{self.path}' has no row for {self.space.to_string(arch)}.")
        for metric in self.directions:
            out[metric] = np.array([self._values[a][metric] for a in archs])


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
