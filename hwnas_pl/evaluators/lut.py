r"""Per-op latency lookup table (PRP-NAS §3.3): a network's latency is the sum of its ops' measured latencies.

.. math:: \widehat{LAT}(a) = \sum_{o \in \mathrm{ops}(a)} LUT[o, \mathrm{shape}_{in}(o)]

Each op is measured once, standalone, at its position's input shape (the space's :meth:`latency_ops`), with the
same warm-up/repeat protocol as :func:`~hwnas_pl.evaluators.latency.measure_module`. The table is saved as JSON
with its device profile (device model, torch version, CPU threads, batch size) and refused when loaded for a
different profile: latencies of one machine say little about another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.base import register_cost_model
from hwnas_pl.evaluators.latency import LatencyModel, device_profile, fixed_threads, time_call
from hwnas_pl.rng import isolated_rng
from hwnas_pl.spaces.base import OpSpec, SearchSpace

LUT_FORMAT = 1


class LUTProfileError(UserInputError):
    """A lookup table was measured on another device profile than the one asked for."""


class LUTMissingOpError(UserInputError):
    """A strict lookup table has no entry for an op of the architecture."""


@register_cost_model("lut")
class LatencyLUT(LatencyModel):
    """``latency_ms`` of each architecture as the sum of per-op latencies from a lookup table.

    Args:
        space: the search space.
        path: JSON file of the table. Loaded when it exists (and refused if its profile differs), written after
            new ops are measured.
        device: ``"cpu"`` or ``"cuda:N"``.
        batch_size: inference batch size.
        threads: CPU threads while measuring (default: torch's current setting).
        input_shape: (channels, height, width) of one network input.
        num_classes: classifier outputs.
        warmup: untimed calls per op.
        repeats: timed calls per op (median).
        strict: if True, an op missing from the table is an error instead of being measured.
        statistic: each entry is the ``"median"`` or the ``"min"`` of its timed calls.
    """

    directions = {"latency_ms": "min"}

    def __init__(
        self,
        space: SearchSpace,
        path: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 1,
        threads: int | None = None,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        warmup: int = 10,
        repeats: int = 50,
        strict: bool = False,
        statistic: str = "median",
    ) -> None:
        super().__init__(space)
        self.set_measurement(device, batch_size, threads, input_shape, num_classes, warmup, repeats, statistic)
        self.path = Path(path) if path is not None else None
        self.strict = strict
        self.profile = {**device_profile(self.device, batch_size, threads), "space": space.name, "statistic": statistic}
        self.entries: dict[str, float] = {}
        if self.path is not None and self.path.is_file():
            self.load(self.path)

    # ------------------------------------------------------------------ persistence
    def load(self, path: str | Path) -> None:
        """Read entries from ``path``; its profile must equal this table's.

        Raises:
            LUTProfileError: when the file was measured for another device profile.
            UserInputError: when the file is not a LUT written by this class.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            profile, entries = data["profile"], data["entries"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserInputError(
                f"Latency LUT '{path}' is not a lookup table; expected JSON with 'profile' and 'entries'."
            ) from None
        differ = {k: (profile.get(k), v) for k, v in self.profile.items() if profile.get(k) != v}
        if differ:
            what = "; ".join(f"{k}: {was!r} in the file, {now!r} here" for k, (was, now) in differ.items())
            raise LUTProfileError(
                f"Latency LUT '{path}' was measured for another device profile ({what}); expected a LUT of this "
                "profile: rebuild it with `hwnas bench lut` or point `path` to a new file."
            )
        self.entries.update({str(k): float(v) for k, v in entries.items()})

    def save(self, path: str | Path | None = None) -> Path:
        """Write the table with its profile to ``path`` (default: the table's own path)."""
        path = Path(path) if path is not None else self.path
        if path is None:
            raise ConfigError("LatencyLUT.save needs a path: give one, or set `path` when creating the LUT.")
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": LUT_FORMAT, "profile": self.profile, "entries": dict(sorted(self.entries.items()))}
        path.write_text(json.dumps(payload, indent=1))
        return path

    # ------------------------------------------------------------------ measurement
    def _ops(self, arch: Any) -> list[OpSpec]:
        return self.space.latency_ops(arch, self.num_classes, self.input_shape)

    def measure(self, ops: Iterable[OpSpec]) -> int:
        """Measure the ops whose keys the table lacks; returns how many were added (and saves if it has a path)."""
        todo: dict[str, OpSpec] = {}
        for op in ops:
            if op.key not in self.entries:
                todo.setdefault(op.key, op)
        with fixed_threads(self.threads), torch.inference_mode(), isolated_rng():
            for key, op in todo.items():
                module = op.build().to(self.device).eval()
                x = torch.randn(self.batch_size, *op.input_shape, device=self.device)
                stats = time_call(lambda m=module, x=x: m(x), self.device, self.warmup, self.repeats)
                self.entries[key] = stats.get(self.statistic)
        if todo and self.path is not None:
            self.save()
        return len(todo)

    def build_for(self, archs: Iterable[Any]) -> int:
        """Measure every op the given architectures use (e.g. a sample of the space); returns the ops added."""
        return self.measure(op for arch in archs for op in self._ops(self.space.validate(arch)))

    # ------------------------------------------------------------------ cost model
    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        per_arch = [self._ops(a) for a in archs]
        missing = [op for ops in per_arch for op in ops if op.key not in self.entries]
        if missing and self.strict:
            raise LUTMissingOpError(
                f"Latency LUT{f' {str(self.path)!r}' if self.path else ''} has no entry for op '{missing[0].key}' "
                f"(and {len({m.key for m in missing}) - 1} more); expected a LUT built for this space and input shape "
                "(run `hwnas bench lut`, or set strict: false to measure missing ops)."
            )
        if missing:
            self.measure(missing)
        out["latency_ms"] = np.array([sum(self.entries[op.key] for op in ops) for ops in per_arch])
