"""Measured inference latency on a named device: warm-up, repeats, median and spread, fixed threads, CUDA sync."""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.base import CostModel, register_cost_model
from hwnas_pl.rng import isolated_rng
from hwnas_pl.spaces.base import SearchSpace

STATISTICS = ("median", "min")


def check_statistic(statistic: str) -> str:
    """``statistic`` if it names one of :data:`STATISTICS`, else ConfigError."""
    if statistic not in STATISTICS:
        raise ConfigError(f"Unknown latency statistic '{statistic}'; expected one of: {', '.join(STATISTICS)}.")
    return statistic


@dataclass(frozen=True)
class LatencyStats:
    """Latency of repeated calls, in milliseconds."""

    median_ms: float
    iqr_ms: float
    mean_ms: float
    min_ms: float
    repeats: int

    def get(self, statistic: str) -> float:
        """``median`` (default everywhere) or ``min`` (robust to interference on a shared machine)."""
        return self.median_ms if check_statistic(statistic) == "median" else self.min_ms


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device`` of ``device``, refusing a CUDA device this machine does not have.

    Raises:
        ConfigError: for an unknown device string or an absent CUDA device.
    """
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"Unknown device '{device}'; expected 'cpu' or 'cuda:N'.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"Device '{device}' was asked for, but this machine has no CUDA device.")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"Device '{device}' does not exist; this machine has {torch.cuda.device_count()} GPUs.")
        dev = torch.device("cuda", index)
    elif dev.type != "cpu":
        raise ConfigError(f"Unsupported device '{device}'; expected 'cpu' or 'cuda:N'.")
    return dev


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):  # noqa: SIM115
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_profile(device: str | torch.device, batch_size: int, threads: int | None) -> dict[str, Any]:
    """What a latency measurement depends on: device model, torch version, CPU threads and batch size."""
    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    return {
        "device": f"{dev.type}: {name}",
        "torch": torch.__version__.split("+")[0],
        "threads": int(threads or torch.get_num_threads()),
        "batch_size": int(batch_size),
        "dtype": "float32",
    }


@contextlib.contextmanager
def fixed_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (unchanged when ``None``)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_call(fn: Callable[[], Any], device: torch.device, warmup: int = 5, repeats: int = 20) -> LatencyStats:
    """Median and inter-quartile range of ``fn()``'s wall time over ``repeats`` calls after ``warmup`` calls."""
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"Latency needs repeats >= 1 and warmup >= 0, got {repeats} and {warmup}.")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    for _ in range(warmup):
        fn()
    sync(device)
    times = np.empty(repeats)
    for r in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times[r] = (time.perf_counter() - start) * 1e3
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return LatencyStats(float(median), float(q3 - q1), float(times.mean()), float(times.min()), repeats)


def measure_module(
    module: nn.Module,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    warmup: int = 5,
    repeats: int = 20,
    threads: int | None = None,
) -> LatencyStats:
    """Inference latency of ``module`` on inputs of ``(batch_size, *input_shape)`` (eval mode, no autograd)."""
    dev = resolve_device(device)
    module = module.to(dev).eval()
    x = torch.randn(batch_size, *input_shape, device=dev)
    with fixed_threads(threads), torch.inference_mode():
        return time_call(lambda: module(x), dev, warmup, repeats)


class LatencyModel(CostModel):
    """What every latency cost model shares: the measurement settings, validated once, and the device placement.

    Subclasses call :meth:`set_measurement` from ``__init__`` with their (documented) arguments.
    """

    def set_measurement(
        self,
        device: str,
        batch_size: int,
        threads: int | None,
        input_shape: Sequence[int],
        num_classes: int,
        warmup: int,
        repeats: int,
        statistic: str,
    ) -> None:
        """Store the measurement settings (``statistic`` checked, ``device`` resolved)."""
        self.statistic = check_statistic(statistic)
        self.device = resolve_device(device)
        self.batch_size, self.threads, self.warmup, self.repeats = batch_size, threads, warmup, repeats
        self.input_shape, self.num_classes = tuple(int(s) for s in input_shape), num_classes

    def place(self, device: str) -> None:
        """A model measuring a GPU measures this process's GPU in a sharded search (CPU models stay on the CPU)."""
        if self.device.type == "cuda" and device.startswith("cuda"):
            self.device = resolve_device(device)


@register_cost_model("measured")
class MeasuredLatencyModel(LatencyModel):
    """End-to-end latency of each built network, measured on ``device``: ``latency_ms`` and ``latency_iqr_ms``.

    Args:
        space: the search space.
        device: ``"cpu"`` or ``"cuda:N"``.
        batch_size: inference batch size.
        warmup: untimed calls before timing.
        repeats: timed calls.
        threads: CPU threads during the measurement (default: torch's current setting).
        input_shape: (channels, height, width) of one input.
        num_classes: classifier outputs.
        statistic: ``latency_ms`` is the ``"median"`` or the ``"min"`` of the timed calls.
    """

    directions = {"latency_ms": "min", "latency_iqr_ms": "min"}

    def __init__(
        self,
        space: SearchSpace,
        device: str = "cpu",
        batch_size: int = 1,
        warmup: int = 5,
        repeats: int = 20,
        threads: int | None = None,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        statistic: str = "median",
    ) -> None:
        super().__init__(space)
        self.set_measurement(device, batch_size, threads, input_shape, num_classes, warmup, repeats, statistic)

    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        with isolated_rng():  # building and feeding the networks must not move a training run's generators
            stats = [
                measure_module(
                    self.space.build(a, self.num_classes, self.input_shape),
                    self.input_shape,
                    self.device,
                    self.batch_size,
                    self.warmup,
                    self.repeats,
                    self.threads,
                )
                for a in archs
            ]
        out["latency_ms"] = np.array([s.get(self.statistic) for s in stats])
        out["latency_iqr_ms"] = np.array([s.iqr_ms for s in stats])
