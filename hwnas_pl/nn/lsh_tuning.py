r"""Per-layer LSH settings by Bayesian optimisation ("Treasure What You Have" §3.3, Fig. 6, Eq. 3).

Each reuse layer's (``input_dim`` L, ``hash_size`` H) is tuned on its own, on sample inputs of that layer, by
minimising

.. math:: \Theta = \mathrm{MSE}(a, b) / \sigma

with :math:`a, b` the dense and the reuse layer's outputs and :math:`\sigma` the compression "computed by dividing
the original input and centroid sizes": sub-vectors over centroids, :math:`NB/U` (so :math:`\Theta = \mathrm{MSE}
\cdot U / NB`; the paper's equation names inputs, its text outputs: outputs are used, they have one size). The
loop is the paper's: an initial design, a Gaussian process (BoTorch ``SingleTaskGP`` on :math:`-\log\Theta`,
standardised), the next point by expected improvement (BoTorch's ``LogExpectedImprovement``, maximised exactly over
the unevaluated grid points, since the settings are integers), until ``budget`` evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.reuse import reuse_layer

#: the grid searched by default: sub-vector lengths and hyperplane counts
INPUT_DIMS = (2, 4, 8, 16, 32, 64)
HASH_SIZES = tuple(range(2, 17))


def reuse_error(
    dense: nn.Module,
    inputs: torch.Tensor,
    input_dim: int,
    hash_size: int,
    seed: int = 0,
    per_sample: bool = False,
    norm_step: float | None = None,
) -> dict:
    """Θ of Eq. 3 and its parts for one layer on ``inputs`` (no gradients).

    ``per_sample``: ``inputs`` is a batch of frames, each clustered on its own as in batch-1 inference (else all
    rows share clusters). ``norm_step``: the norm buckets of :func:`~hwnas_pl.nn.reuse.lsh_cluster` (beyond the paper).

    Returns ``mse``, ``nmse`` (MSE over the dense output's variance), ``sigma`` (sub-vectors / centroids),
    ``compression_ratio`` (``1 - 1/sigma``) and ``theta`` (``mse / sigma``).
    """
    layer = reuse_layer(dense, input_dim, hash_size, seed, per_sample=per_sample, norm_step=norm_step)
    with torch.no_grad():
        ref, out = dense(inputs), layer(inputs)
    mse = float(F.mse_loss(out, ref))
    subvectors = sum(c.rows * c.blocks for c in layer.last)
    sigma = subvectors / max(sum(c.n_centroids for c in layer.last), 1)
    row = {"input_dim": input_dim, "hash_size": hash_size, "mse": mse, "nmse": mse / max(float(ref.var()), 1e-30),
           "sigma": sigma, "compression_ratio": 1.0 - 1.0 / sigma, "theta": mse / sigma}  # fmt: skip
    return row if norm_step is None else {**row, "norm_step": norm_step}


@dataclass
class LayerTuning:
    """What tuning one layer found: ``best`` (the row of least Θ) and every evaluation in order (``history``)."""

    best: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def setting(self) -> dict[str, int | float]:
        """What :func:`~hwnas_pl.nn.reuse.to_reuse`'s ``layers`` takes for this layer.

        ``{input_dim, hash_size}``, and ``norm_step`` when tuned with one.
        """
        setting = {"input_dim": int(self.best["input_dim"]), "hash_size": int(self.best["hash_size"])}
        return setting if "norm_step" not in self.best else {**setting, "norm_step": float(self.best["norm_step"])}


def _features(grid: np.ndarray) -> torch.Tensor:
    """(log2 L, H) scaled to [0, 1] over the grid: the GP's inputs."""
    x = np.stack([np.log2(grid[:, 0]), grid[:, 1]], axis=1).astype(float)
    span = np.where(x.max(0) > x.min(0), x.max(0) - x.min(0), 1.0)
    return torch.tensor((x - x.min(0)) / span, dtype=torch.float64)


def grid_minimize(
    features: torch.Tensor, evaluate: Callable[[int], float], n_init: int, budget: int, seed: int = 0
) -> list[int]:
    r"""Minimise ``evaluate(i)`` (> 0) over grid points ``i`` with features ``(n, d)`` in [0, 1]: GP + log EI.

    ``n_init`` points drawn at random (seeded), then each step the unevaluated point of greatest log expected
    improvement of :math:`-\log` value under a ``SingleTaskGP`` (standardised outcomes), ``budget`` evaluations
    in all. Returns the indices in evaluation order.
    """
    from botorch.acquisition import LogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    if not 1 <= n_init <= budget:
        raise ConfigError(f"LSH tuning needs 1 <= n_init <= budget, got n_init {n_init} and budget {budget}.")
    budget = min(budget, len(features))
    rng = np.random.default_rng(seed)
    chosen = [int(i) for i in rng.choice(len(features), size=min(n_init, budget), replace=False)]
    values = [evaluate(i) for i in chosen]
    while len(chosen) < budget:
        y = torch.tensor([[-math.log(max(v, 1e-30))] for v in values], dtype=torch.float64)
        with torch.random.fork_rng():
            torch.manual_seed(seed + len(chosen))
            model = SingleTaskGP(features[chosen], y, outcome_transform=Standardize(m=1))
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            acquisition = LogExpectedImprovement(model, best_f=y.max())  # the posterior is in y's units
            left = [i for i in range(len(features)) if i not in set(chosen)]
            with torch.no_grad():
                scores = acquisition(features[left].unsqueeze(1))
        chosen.append(left[int(torch.argmax(scores))])
        values.append(evaluate(chosen[-1]))
    return chosen


def tune_layer(
    dense: nn.Module,
    inputs: torch.Tensor,
    input_dims: Sequence[int] = INPUT_DIMS,
    hash_sizes: Sequence[int] = HASH_SIZES,
    n_init: int = 5,
    budget: int = 20,
    seed: int = 0,
    projection_seed: int = 0,
    max_nmse: float | None = None,
    per_sample: bool = False,
    norm_step: float | None = None,
) -> LayerTuning:
    r"""Minimise Θ over ``input_dims × hash_sizes`` for ``dense`` on ``inputs`` (module docstring).

    :func:`grid_minimize` with ``n_init`` random points and ``budget`` evaluations (at most the grid's size).
    ``projection_seed``: the reuse layer's ``seed`` (its hyperplanes), which ``to_reuse`` must be given too for the
    tuned Θ to hold. ``per_sample`` and ``norm_step`` (fixed, not tuned): as :func:`reuse_error`.

    ``max_nmse`` (beyond the paper): maximise the compression within a layer NMSE budget τ instead, minimising
    :math:`\sigma^{-1} \max(1, \mathrm{NMSE}/	au)^4`; the best is the least :math:`\sigma^{-1}` within τ (the least
    value if none is). Eq. 3's Θ divides the MSE by σ, which grows without bound as sub-vectors shrink, so on real
    layers it picks the most compressing settings whatever their error (``benchmarks/lsh_tuning.py``).
    """
    if max_nmse is not None and max_nmse <= 0:
        raise ConfigError(f"LSH tuning max_nmse must be > 0, got {max_nmse}.")
    grid = np.array([(L, H) for L in input_dims for H in hash_sizes], dtype=int)
    if not len(grid) or min(input_dims) < 1 or min(hash_sizes) < 1:
        raise ConfigError("LSH tuning needs non-empty input_dims and hash_sizes of positive integers.")
    rows: dict[int, dict[str, Any]] = {}

    def value(row: dict[str, Any]) -> float:
        if max_nmse is None:
            return row["theta"]
        return max(1.0, row["nmse"] / max_nmse) ** 4 / row["sigma"]

    def objective(i: int) -> float:
        rows[i] = reuse_error(dense, inputs, int(grid[i, 0]), int(grid[i, 1]), projection_seed, per_sample, norm_step)
        return value(rows[i])

    order = grid_minimize(_features(grid), objective, n_init, budget, seed)
    history = [rows[i] for i in order]
    within = [h for h in history if max_nmse is None or h["nmse"] <= max_nmse] or history
    return LayerTuning(best=min(within, key=value), history=history)


def layer_inputs(net: nn.Module, frames: torch.Tensor) -> tuple[dict[str, nn.Module], dict[str, torch.Tensor]]:
    """The layers :func:`~hwnas_pl.nn.reuse.to_reuse` would swap, and each one's input over ``frames``.

    One dense pass per frame; a layer's inputs are concatenated along the batch.
    """
    from hwnas_pl.nn.reuse import dense_reason

    layers = {n: m for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and not dense_reason(m)}
    captured: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: captured[n].append(args[0].detach()))
             for n, m in layers.items()]  # fmt: skip
    try:
        with torch.no_grad():
            for t in range(len(frames)):
                net(frames[t : t + 1])
    finally:
        for h in hooks:
            h.remove()
    return layers, {n: torch.cat(v) for n, v in captured.items() if v}


def _tune_one(task: tuple) -> tuple[str, LayerTuning, float]:
    """One layer in a worker process, on one torch thread."""
    import time

    name, layer, inputs, kwargs = task
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    return name, tune_layer(layer, inputs, **kwargs), time.perf_counter() - t0


def tune_network(
    net: nn.Module, frames: torch.Tensor, workers: int = 1, **kwargs: Any
) -> dict[str, tuple[LayerTuning, float]]:
    """:func:`tune_layer` for every layer ``to_reuse`` would swap, each on its own inputs over ``frames``.

    ``workers`` processes (the paper: one optimisation per layer, in parallel); ``kwargs`` go to
    :func:`tune_layer`. Each frame is clustered on its own (``per_sample``), as ``hwnas bench reuse`` runs them
    at batch 1. Returns ``{layer: (tuning, seconds)}`` in the network's order.
    """
    layers, inputs = layer_inputs(net, frames)
    kwargs = {"per_sample": True, **kwargs}
    tasks = [(n, layers[n], inputs[n], kwargs) for n in layers if n in inputs]
    if workers <= 1:
        done = [_tune_one(t) for t in tasks]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(_tune_one, tasks))
    return {name: (tuning, seconds) for name, tuning, seconds in done}
