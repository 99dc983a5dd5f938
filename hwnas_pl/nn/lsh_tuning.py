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
import warnings
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
    ``compression_ratio`` (``1 - 1/sigma``), ``theta`` (``mse / sigma``), and ``macs`` / ``macs_saved``: the
    dense layer's multiply-accumulates on ``inputs`` and those the reuse layer did not do.
    """
    layer = reuse_layer(dense, input_dim, hash_size, seed, per_sample=per_sample, norm_step=norm_step)
    with torch.no_grad():
        ref, out = dense(inputs), layer(inputs)
    mse = float(F.mse_loss(out, ref))
    subvectors = sum(c.rows * c.blocks for c in layer.last)
    sigma = subvectors / max(sum(c.n_centroids for c in layer.last), 1)
    row = {"input_dim": input_dim, "hash_size": hash_size, "mse": mse, "nmse": mse / max(float(ref.var()), 1e-30),
           "sigma": sigma, "compression_ratio": 1.0 - 1.0 / sigma, "theta": mse / sigma,
           "macs": layer.last_macs[0], "macs_saved": layer.last_macs[0] - layer.last_macs[1]}  # fmt: skip
    return row if norm_step is None else {**row, "norm_step": norm_step}


@dataclass
class LayerTuning:
    """What tuning one layer found: ``best`` (the row of least Θ) and every evaluation in order (``history``)."""

    best: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def front(self) -> list[dict[str, Any]]:
        """The evaluated settings no other beats on both NMSE (lower) and compression ratio (higher), by NMSE."""
        from hwnas_pl.pareto import is_non_dominated

        if not self.history:
            return []
        mask = is_non_dominated([[h["nmse"], h["compression_ratio"]] for h in self.history], ["min", "max"])
        return sorted((h for h, m in zip(self.history, mask) if m), key=lambda h: h["nmse"])

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


def _grid_bo(
    features: torch.Tensor,
    evaluate: Callable[[int], Sequence[float]],
    n_init: int,
    budget: int,
    seed: int,
    acquisition: Callable[[Any, torch.Tensor, list[int]], Any],
) -> list[int]:
    """The BO loop on a grid; returns the indices of the points evaluated, in order.

    ``n_init`` random points (seeded), then each step the unevaluated point of greatest
    ``acquisition(model, y, chosen)`` under a ``SingleTaskGP`` (standardised outcomes ``y``, to maximise, one column
    per objective) fitted to the points so far, ``budget`` evaluations in all.
    """
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from linear_operator.utils.warnings import NumericalWarning

    if not 1 <= n_init <= budget:
        raise ConfigError(f"LSH tuning needs 1 <= n_init <= budget, got n_init {n_init} and budget {budget}.")
    budget = min(budget, len(features))
    rng = np.random.default_rng(seed)
    chosen = [int(i) for i in rng.choice(len(features), size=min(n_init, budget), replace=False)]
    outcomes = [list(evaluate(i)) for i in chosen]
    while len(chosen) < budget:
        y = torch.tensor(outcomes, dtype=torch.float64)
        with torch.random.fork_rng(), warnings.catch_warnings():
            # noise-free outcomes: the posterior covariance of evaluated points needs jitter, which is expected
            warnings.simplefilter("ignore", NumericalWarning)
            torch.manual_seed(seed + len(chosen))
            model = SingleTaskGP(features[chosen], y, outcome_transform=Standardize(m=y.shape[1]))
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            left = [i for i in range(len(features)) if i not in set(chosen)]
            with torch.no_grad():
                scores = acquisition(model, y, chosen)(features[left].unsqueeze(1))
        chosen.append(left[int(torch.argmax(scores))])
        outcomes.append(list(evaluate(chosen[-1])))
    return chosen


def grid_minimize(
    features: torch.Tensor, evaluate: Callable[[int], float], n_init: int, budget: int, seed: int = 0
) -> list[int]:
    r"""Minimise ``evaluate(i)`` (> 0) over grid points ``i`` with features ``(n, d)`` in [0, 1]: GP + log EI.

    ``n_init`` points drawn at random (seeded), then each step the unevaluated point of greatest log expected
    improvement of :math:`-\log` value under a ``SingleTaskGP`` (standardised outcomes), ``budget`` evaluations
    in all. Returns the indices in evaluation order.
    """
    from botorch.acquisition import LogExpectedImprovement

    def log_ei(model, y, chosen):
        return LogExpectedImprovement(model, best_f=y.max())  # the posterior is in y's units

    return _grid_bo(features, lambda i: [-math.log(max(evaluate(i), 1e-30))], n_init, budget, seed, log_ei)


def grid_pareto(
    features: torch.Tensor, evaluate: Callable[[int], Sequence[float]], n_init: int, budget: int, seed: int = 0
) -> list[int]:
    r"""Maximise several objectives ``evaluate(i)`` over grid points: GP + qLogNEHVI.

    The acquisition is BoTorch's noisy expected hypervolume improvement in its log form, the reference point just
    below the worst of each objective seen (a tenth of its range). The loop and its arguments are
    :func:`grid_minimize`'s; returns the indices in evaluation order.
    """
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
    from botorch.sampling import SobolQMCNormalSampler

    from hwnas_pl.pareto import nadir_reference_point

    def log_nehvi(model, y, chosen):
        ref = nadir_reference_point(y.numpy(), ["max"] * y.shape[1], margin=0.1)
        sampler = SobolQMCNormalSampler(torch.Size([128]), seed=seed + len(chosen))
        return qLogNoisyExpectedHypervolumeImprovement(
            model, ref.tolist(), features[chosen], sampler=sampler, prune_baseline=True
        )

    return _grid_bo(features, evaluate, n_init, budget, seed, log_nehvi)


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
    pareto: bool = False,
) -> LayerTuning:
    r"""Minimise Θ over ``input_dims × hash_sizes`` for ``dense`` on ``inputs`` (module docstring).

    :func:`grid_minimize` with ``n_init`` random points and ``budget`` evaluations (at most the grid's size).
    ``pareto`` (beyond the paper): search for the layer's NMSE/compression front instead, with :func:`grid_pareto`
    over (:math:`-\log \mathrm{NMSE}`, :math:`\log\sigma`); the result's ``front`` holds it and ``best`` is
    chosen from what was evaluated as below.
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

    def measure(i: int) -> dict[str, Any]:
        rows[i] = reuse_error(dense, inputs, int(grid[i, 0]), int(grid[i, 1]), projection_seed, per_sample, norm_step)
        return rows[i]

    if pareto:

        def objectives(i: int) -> list[float]:
            row = measure(i)
            return [-math.log(max(row["nmse"], 1e-12)), math.log(row["sigma"])]

        order = grid_pareto(_features(grid), objectives, n_init, budget, seed)
    else:
        order = grid_minimize(_features(grid), lambda i: value(measure(i)), n_init, budget, seed)
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
    at batch 1. Layer ``i`` (in ``named_modules`` order) is tuned with the hyperplanes ``to_reuse(seed=s)`` gives it,
    seed ``s + i`` for ``projection_seed`` ``s``. Returns ``{layer: (tuning, seconds)}`` in the network's order.
    """
    layers, inputs = layer_inputs(net, frames)
    kwargs = {"per_sample": True, **kwargs}
    index = {n: i for i, (n, _) in enumerate(net.named_modules())}
    base = kwargs.pop("projection_seed", 0)
    tasks = [(n, layers[n], inputs[n], {**kwargs, "projection_seed": base + index[n]}) for n in layers if n in inputs]
    if workers <= 1:
        done = [_tune_one(t) for t in tasks]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(_tune_one, tasks))
    return {name: (tuning, seconds) for name, tuning, seconds in done}


def _saved(point: dict[str, Any] | None) -> float:
    """MACs a front point saves (a dense layer, ``None``: 0)."""
    return 0.0 if point is None else point["macs_saved"]


def _error(point: dict[str, Any] | None) -> float:
    """A front point's layer NMSE (a dense layer, ``None``: 0)."""
    return 0.0 if point is None else point["nmse"]


def pick_for_budget(fronts: dict[str, list[dict[str, Any]]], budget: float) -> dict[str, dict[str, Any] | None]:
    r"""One point of each layer's front, or ``None`` (dense), for the most MACs saved within a summed layer NMSE.

    Maximise :math:`\sum_i s_i` subject to :math:`\sum_i e_i \le b` (``budget``), with
    :math:`s_i` a point's ``macs_saved`` and :math:`e_i` its ``nmse`` (dense: 0 and 0).

    Lagrangian relaxation: for a price :math:`\beta` each layer takes its point of greatest :math:`s - \beta e`;
    the least price (bisection on :math:`\log\beta`) whose choice is within the budget is taken, and what is left of
    the budget is then filled greedily (each step the upgrade of most MACs saved per NMSE that fits), since the
    price alone reaches only points on each front's convex hull.
    """
    if budget < 0:
        raise ConfigError(f"The network NMSE budget must be >= 0, got {budget}.")
    options = {n: [None, *front] for n, front in fronts.items()}

    def choose(beta: float) -> tuple[dict[str, dict[str, Any] | None], float]:
        picks = {n: max(opts, key=lambda o: _saved(o) - beta * _error(o)) for n, opts in options.items()}
        return picks, sum(_error(o) for o in picks.values())

    picks, spent = choose(0.0)
    if spent <= budget:
        return picks
    low, high = -30.0, 60.0  # log10 of the price: everything reused at the low end, all dense at the high end
    for _ in range(80):
        middle = (low + high) / 2
        if choose(10.0**middle)[1] <= budget:
            high = middle
        else:
            low = middle
    picks, spent = choose(10.0**high)
    while True:  # then fill what is left of the budget: the upgrade of most MACs saved per NMSE that still fits
        moves = [(gain, n, o) for n, opts in options.items() for o in opts
                 for gain in [(_saved(o) - _saved(picks[n])) / max(_error(o) - _error(picks[n]), 1e-30)]
                 if _saved(o) > _saved(picks[n]) and spent - _error(picks[n]) + _error(o) <= budget]  # fmt: skip
        if not moves:
            return picks
        _, n, o = max(moves, key=lambda m: m[0])
        spent += _error(o) - _error(picks[n])
        picks[n] = o


def network_nmse(net: nn.Module, frames: torch.Tensor, layers: dict[str, dict[str, Any]], seed: int = 0) -> float:
    """The output NMSE of ``net`` with ``layers`` reused against ``net`` dense; ``net`` is left unchanged.

    The other layers stay dense; the projections are those ``to_reuse(seed=seed)`` gives. Per frame and averaged
    over ``frames``, as ``hwnas bench reuse`` reports it (:func:`~hwnas_pl.nn.reuse_timing.output_nmse`).
    """
    import copy

    from hwnas_pl.nn.reuse import to_reuse
    from hwnas_pl.nn.reuse_timing import output_nmse

    reused, _ = to_reuse(copy.deepcopy(net), layers, None, (), seed)
    with torch.no_grad():
        return float(
            np.mean([output_nmse(net(frames[t : t + 1]), reused(frames[t : t + 1])) for t in range(len(frames))])
        )


@dataclass
class NetworkPick:
    """Per-layer settings for a network NMSE budget (:func:`fit_network_budget`).

    ``points``: name -> the chosen row of the layer's front, ``None`` where it stays dense (:attr:`layers` and
    :attr:`dense` are derived from them); ``nmse``: the network's measured output NMSE with them;
    ``macs_saved_fraction``: MACs saved over the tuned layers' dense MACs; ``rounds``: each round's (layer-NMSE
    budget, measured network NMSE, MACs saved fraction); the budget is ``None`` for the refinement steps.
    """

    points: dict[str, dict[str, Any] | None]
    nmse: float
    macs_saved_fraction: float
    rounds: list[tuple[float | None, float, float]]

    @property
    def layers(self) -> dict[str, dict[str, int | float]]:
        """Name -> ``to_reuse`` setting of the reused layers."""
        return {n: LayerTuning(p).setting for n, p in self.points.items() if p is not None}

    @property
    def dense(self) -> list[str]:
        """Names of the layers kept dense."""
        return [n for n, p in self.points.items() if p is None]


def fit_network_budget(
    net: nn.Module,
    frames: torch.Tensor,
    tuned: dict[str, LayerTuning],
    max_network_nmse: float,
    seed: int = 0,
    rounds: int = 12,
    refine: int | None = None,
) -> NetworkPick:
    r"""Per-layer points of the tuned fronts for a network output NMSE of at most ``max_network_nmse``.

    Beyond the paper's Θ, for its multi-objective reading.

    The layers' errors are taken as adding up at the output (:func:`pick_for_budget` on a summed layer-NMSE budget
    :math:`b`), and :math:`b` is calibrated on ``frames`` by measurement (:func:`network_nmse`): it starts at the
    network budget, is scaled by budget / measured (×2 to ×10 up, ×1/2 to ×1/10 down) until one :math:`b` is
    known within the budget and one beyond it, then bisected geometrically between them, ``rounds`` rounds in all
    (a choice seen before is not measured again). From the pick of most MACs saved among those measured within the
    budget (all dense if none was), ``refine`` more measurements (default: two per layer) try one layer at a time one
    point up its front, most MACs saved per layer NMSE first, each kept if the network stays within the budget: the
    layers' errors do not add up where the network amplifies one of them.
    """
    if max_network_nmse <= 0:
        raise ConfigError(f"The network NMSE budget must be > 0, got {max_network_nmse}.")
    fronts = {n: t.front for n, t in tuned.items()}
    total = sum(t.history[0]["macs"] for t in tuned.values()) or 1
    history: list[tuple[float | None, float, float]] = []
    measured: dict[tuple, float] = {}

    def measure(picks: dict[str, dict[str, Any] | None]) -> NetworkPick:
        pick = NetworkPick(picks, 0.0, sum(_saved(p) for p in picks.values()) / total, [])
        key = tuple(sorted((n, tuple(s.items())) for n, s in pick.layers.items()))
        if key not in measured:
            measured[key] = network_nmse(net, frames, pick.layers, seed) if pick.layers else 0.0
        pick.nmse = measured[key]
        return pick

    best = NetworkPick(dict.fromkeys(tuned), 0.0, 0.0, [])
    budget, within, beyond = max_network_nmse, 0.0, math.inf
    for _ in range(rounds):
        pick = measure(pick_for_budget(fronts, budget))
        history.append((budget, pick.nmse, pick.macs_saved_fraction))
        if pick.nmse <= max_network_nmse:
            within = max(within, budget)
            if pick.macs_saved_fraction > best.macs_saved_fraction:
                best = pick
        else:
            beyond = min(beyond, budget)
        if within > 0 and beyond < math.inf:
            budget = math.sqrt(within * beyond)
        else:
            scale = max_network_nmse / max(pick.nmse, 1e-30)
            budget *= min(max(scale, 2.0), 10.0) if pick.nmse <= max_network_nmse else max(min(scale, 0.5), 0.1)
    left = 2 * len(tuned) if refine is None else refine
    while left > 0:
        steps = []
        for n, front in fronts.items():
            now = best.points[n]
            up = [o for o in front if o["macs_saved"] > _saved(now)]
            if up:
                nxt = min(up, key=lambda o: o["nmse"])
                steps.append(((nxt["macs_saved"] - _saved(now)) / max(nxt["nmse"] - _error(now), 1e-30), n, nxt))
        kept = False
        for _, n, nxt in sorted(steps, key=lambda t: -t[0])[:left]:
            left -= 1
            trial = measure({**best.points, n: nxt})
            history.append((None, trial.nmse, trial.macs_saved_fraction))  # a refinement step: no summed budget
            if trial.nmse <= max_network_nmse and trial.macs_saved_fraction > best.macs_saved_fraction:
                best, kept = trial, True
        if not kept:
            break
    best.rounds = history
    return best
