"""Accuracy of an analog network after PCM programming and conductance drift (thesis §5.2.2, §5.3.2).

One trial programs the trained weights once (programming noise, new drift exponents ν), then drifts them to
each inference time ``t`` in turn (``G(t) = G(t0)(t/t0)^-ν`` plus read noise; global drift compensation) and
evaluates. Over ``n`` trials this gives the mean and spread of the accuracy at each time, and

    AVM = acc(1 s) − acc(30 days)        (the thesis's accuracy variation over one month, a drop)
    σ   = std over trials of acc(1 day)

The trained weights are restored afterwards, so evaluation can run in the middle of training.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from hwnas_pl.errors import ConfigError

SECOND, HOUR, DAY, MONTH, YEAR = 1.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0
DEFAULT_TIMES = (SECOND, HOUR, DAY, MONTH, YEAR)
UNITS = {"s": SECOND, "m": 60.0, "h": HOUR, "d": DAY, "y": YEAR}
TILE_STATE = ("reference_combined_weights", "programmed_weights", "drift_noise_parameters", "drift_baseline", "alpha")


def parse_time(value: float | int | str) -> float:
    """Seconds of an inference time given in seconds or as ``"1h"``, ``"30d"``, ``"1y"`` (s, m, h, d, y).

    Raises:
        ConfigError: when the time is not a positive number of seconds or a number with one of those units.
    """
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([smhdy]?)\s*", value)
        if match is None:
            raise ConfigError(f"Drift time {value!r} is not understood; expected seconds or e.g. '1h', '30d', '1y'.")
        seconds = float(match[1]) * UNITS[match[2] or "s"]
    else:
        seconds = float(value)
    if not seconds > 0:
        raise ConfigError(f"Drift times must be positive (seconds after programming), got {value!r}.")
    return seconds


def time_label(seconds: float) -> str:
    """Short label of a time: ``1s``, ``1h``, ``1d``, ``30d``, ``1y`` or the seconds."""
    for unit, size in (("y", YEAR), ("d", DAY), ("h", HOUR), ("m", 60.0), ("s", SECOND)):
        count = seconds / size
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


@dataclass
class DriftResult:
    """Accuracies of ``trials`` programmings at each time (``acc[trial, time]``, fractions in [0, 1]).

    ``extra`` holds ``samples``: how many samples each accuracy counts (all ranks together under DDP).
    """

    times: list[float]
    acc: np.ndarray
    extra: dict = field(default_factory=dict)

    def mean(self) -> np.ndarray:
        return self.acc.mean(axis=0)

    def std(self) -> np.ndarray:
        return self.acc.std(axis=0, ddof=1) if len(self.acc) > 1 else np.zeros(len(self.times))

    def at(self, seconds: float) -> float | None:
        """Mean accuracy at ``seconds`` (``None`` when it was not evaluated)."""
        i = self.index(seconds)
        return None if i is None else float(self.mean()[i])

    def avm(self) -> float | None:
        """acc(1 s) − acc(30 days), or ``None`` when either time is missing."""
        first, month = self.at(SECOND), self.at(MONTH)
        return None if first is None or month is None else first - month

    def avm_trials(self) -> np.ndarray | None:
        """acc(1 s) − acc(30 days) of each trial, or ``None`` when either time is missing."""
        first, month = self.index(SECOND), self.index(MONTH)
        return None if first is None or month is None else self.acc[:, first] - self.acc[:, month]

    def index(self, seconds: float) -> int | None:
        """Column of ``seconds`` in :attr:`acc` (``None`` when it was not evaluated)."""
        hits = [i for i, t in enumerate(self.times) if abs(t - seconds) < 1e-6 * seconds]
        return hits[0] if hits else None

    def sigma_1d(self) -> float | None:
        """Std over trials of the 1-day accuracy, or ``None`` when 1 day was not evaluated."""
        i = self.index(DAY)
        return None if i is None else float(self.std()[i])

    def summary(self, prefix: str = "drift/") -> dict[str, float]:
        """Flat metrics: ``{prefix}acc@{t}``, ``{prefix}acc@{t}_std``, ``{prefix}avm``, ``{prefix}sigma_1d``."""
        out: dict[str, float] = {}
        for t, m, s in zip(self.times, self.mean(), self.std()):
            out[f"{prefix}acc@{time_label(t)}"] = float(m)
            out[f"{prefix}acc@{time_label(t)}_std"] = float(s)
        if (avm := self.avm()) is not None:
            out[f"{prefix}avm"] = avm
        if (sigma := self.sigma_1d()) is not None:
            out[f"{prefix}sigma_1d"] = sigma
        return out

    def to_dict(self) -> dict:
        return {
            "times_s": self.times,
            "labels": [time_label(t) for t in self.times],
            "acc_mean": self.mean().tolist(),
            "acc_std": self.std().tolist(),
            "acc_trials": self.acc.tolist(),
            "avm": self.avm(),
            "sigma_1d": self.sigma_1d(),
            **self.extra,
        }


def difference_ci(a: np.ndarray | None, b: np.ndarray | None = None) -> dict | None:
    """Mean of ``a`` (minus the mean of ``b``) with its 95 % confidence interval (``{"mean", "ci95"}``).

    One sample: Student's t interval of the mean. Two samples: Welch's interval of the difference of means, with
    the Welch–Satterthwaite degrees of freedom. ``None`` when a sample is missing or has fewer than two values.
    """
    from scipy import stats

    if a is None or len(a) < 2 or (b is not None and len(b) < 2):
        return None
    a = np.asarray(a, dtype=float)
    va = a.var(ddof=1) / len(a)
    if b is None:
        mean, var, dof = a.mean(), va, len(a) - 1
    else:
        b = np.asarray(b, dtype=float)
        vb = b.var(ddof=1) / len(b)
        mean, var = a.mean() - b.mean(), va + vb
        dof = var**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if var > 0 else len(a) + len(b) - 2
    half = float(stats.t.ppf(0.975, dof) * np.sqrt(var))
    return {"mean": float(mean), "ci95": [float(mean) - half, float(mean) + half]}


@torch.no_grad()
def count_correct(model: nn.Module, batches: Iterable, device: torch.device) -> tuple[int, int]:
    """(correct top-1 predictions, samples) of ``model`` over ``(x, y)`` batches."""
    correct = total = 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        correct += int((model(x).argmax(dim=-1) == y).sum())
        total += int(y.numel())
    return correct, total


def drift_accuracy(
    model: nn.Module,
    batches: Callable[[], Iterable],
    times: Sequence[float] = DEFAULT_TIMES,
    trials: int = 5,
    seed: int = 0,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
) -> DriftResult:
    """Program ``model`` ``trials`` times, drift each programming to every time in ``times`` and evaluate.

    Args:
        model: an analog network (see :func:`~hwnas_pl.analog.conversion.to_analog`); restored afterwards.
        batches: returns a fresh iterable of ``(x, y)`` batches (this rank's shard under DDP).
        times: inference times in seconds after programming, increasing.
        trials: independent programmings; trial ``k`` draws its noise from seed ``seed + k`` on every rank.
        seed: base seed.
        reduce: sums ``[correct, total]`` counts over processes (DDP); identity when ``None``.
    """
    times = [parse_time(t) for t in times]
    if trials < 1:
        raise ConfigError(f"Drift evaluation needs at least one trial, got {trials}.")
    device = next(model.parameters()).device
    was_training = model.training
    saved_weights = copy.deepcopy(model.state_dict())
    tiles = list(model.analog_tiles())
    saved_tiles = [{k: copy.deepcopy(getattr(t, k, None)) for k in TILE_STATE} for t in tiles]
    acc = np.zeros((trials, len(times)))
    samples = 0
    model.eval()
    try:
        for k in range(trials):
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed + k)
                model.load_state_dict(saved_weights)  # every trial programs the trained weights afresh
                for tile in tiles:
                    tile.reference_combined_weights = None
                model.program_analog_weights()
                for j, t in enumerate(times):
                    model.drift_analog_weights(t)
                    counts = np.array(count_correct(model, batches(), device), dtype=np.float64)
                    if reduce is not None:
                        counts = reduce(counts)
                    acc[k, j] = counts[0] / max(counts[1], 1)
                    samples = int(counts[1])
    finally:
        model.load_state_dict(saved_weights)
        for tile, state in zip(tiles, saved_tiles):  # drift compensation replaces the alpha buffer by a new tensor
            for key, value in state.items():
                setattr(tile, key, value)
        model.train(was_training)
    return DriftResult(times, acc, extra={"samples": samples})
