"""HW-PR-NAS on NAS-Bench-201 (thesis §3.2): how well the Pareto score ranks held-out cells.

Objectives: CIFAR-10 accuracy from the analog-nasbench table (``baseline_acc``, max) and this CPU's latency at batch
1 / one thread from the per-op LUT (``latency_ms``, min). The surrogate is ``ParetoRankModule`` trained by a
Lightning Trainer on an ``ArchitectureDataModule`` (LHS sample), as ``configs/hwprnas_nb201.yaml`` does.

For each encoding of Fig. 3.4 (AF, GCN, LSTM, GCN+AF, all), trained on ``--n_train`` LHS cells (Table 3.2: 500)
for ``--epochs``: the Kendall tau on ``--n_test`` held-out cells of the score against their true Pareto ranks
(target ≥ 0.85) and against accuracy alone (Table 3.2: 0.924 for accuracy at 500 cells), and the training time;
mean ± std over ``--seeds``; next to them, the per-objective baseline the thesis argues against (one XGBoost
regressor per objective on the space's encoding features, Pareto ranks of the predictions). Prints one JSON
object.

``ceiling``: the Pareto-rank tau that an accuracy estimate of a given accuracy tau allows when the latency is exact
(XGBoost's estimate, and the true accuracy plus Gaussian noise), i.e. what the 0.85 target asks of the accuracy
ordering.

    python benchmarks/hwprnas_nb201.py --seeds 0            # ~10 min on 2 cores
    python benchmarks/hwprnas_nb201.py --seeds 0 1 2 --ceiling_only   # ~1 min
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import numpy as np

DIRECTIONS = {"baseline_acc": "max", "latency_ms": "min"}


def objectives(space, archs, lut_path):
    from hwnas_pl.evaluators.lut import LatencyLUT
    from hwnas_pl.evaluators.nasbench201 import NASBench201TableModel

    acc = NASBench201TableModel(space, metrics=["baseline_acc"]).evaluate(archs)["baseline_acc"]
    lut = LatencyLUT(space, lut_path, threads=1)
    lat = lut.evaluate(archs)["latency_ms"]
    lut.save()
    return np.stack([acc, lat], axis=1)


def train_surrogate(space, train, F_train, parts, epochs, seed, n_val=0, checkpoint=None, devices=None, **module_kw):
    """A ParetoRankModule trained by a Trainer on the given cells (objectives from a CSV the DataModule reads).

    ``devices``: the heads and their objectives (default: ``{"cpu": DIRECTIONS}``); ``F_train``'s columns are their
    metrics in order of first appearance. ``checkpoint``: where to save the trained module (what the
    ``pareto_score`` cost model and ``init_from`` read). ``module_kw``: more ParetoRankModule arguments.
    """
    import tempfile
    from pathlib import Path

    import lightning as L
    import torch

    from hwnas_pl.datamodules import ArchitectureDataModule
    from hwnas_pl.modules import ParetoRankModule

    devices = devices or {"cpu": DIRECTIONS}
    metrics = list(dict.fromkeys(m for objectives in devices.values() for m in objectives))
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "objectives.csv"
        lines = ["arch," + ",".join(metrics)] + [
            f"{space.to_string(a)}," + ",".join(str(v) for v in f) for a, f in zip(train, F_train)
        ]
        table.write_text("\n".join(lines))
        L.seed_everything(seed, verbose=False)
        dm = ArchitectureDataModule(space, devices, table=table, n_train=len(train) - n_val, n_val=n_val, seed=seed)
        module = ParetoRankModule(parts=parts, optimizer=partial(torch.optim.Adam, lr=1e-3), **module_kw)
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            limit_val_batches=0 if not n_val else 1.0)  # fmt: skip
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        seconds = time.perf_counter() - t0
        if checkpoint is not None:
            trainer.save_checkpoint(checkpoint)
        return module.eval(), seconds


def scores(space, module, archs, device=0):
    import torch

    from hwnas_pl.nn.architecture_encoders import encode_architectures

    stats = module.stats
    views, _ = encode_architectures(space, archs, stats["input_shape"], stats["num_classes"], stats)
    with torch.no_grad():
        return module.net(views, device).numpy()


def split(args, space, everything, F_all, seed):
    """(train cells, held-out cells, their objectives): an LHS training sample and ``n_test`` other cells."""
    rng = np.random.default_rng(seed)
    train = list(dict.fromkeys(space.sample(args.n_train, rng, "lhs")))
    seen = set(train)
    shuffled = (everything[i] for i in rng.permutation(len(everything)))
    test = [a for a in shuffled if a not in seen][: args.n_test]
    index = {a: i for i, a in enumerate(everything)}
    return train, test, F_all[[index[a] for a in train]], F_all[[index[a] for a in test]]


def mean_std(rows: list[dict]) -> dict:
    return {k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows]))}
            for k in rows[0]}  # fmt: skip


def ranking(args, space, splits) -> dict:
    from hwnas_pl.pareto import kendall_tau, pareto_ranks

    out = {}
    for parts in (p.split("+") for p in args.encodings):
        rows = []
        for seed, (train, test, F_train, F_test) in zip(args.seeds, splits):
            module, seconds = train_surrogate(space, train, F_train, parts, args.epochs, seed)
            s = scores(space, module, test)
            ranks = pareto_ranks(F_test, list(DIRECTIONS.values()))
            rows.append({"tau_pareto_rank": kendall_tau(s, -ranks), "tau_accuracy": kendall_tau(s, F_test[:, 0]),
                         "train_seconds": seconds})  # fmt: skip
        out["+".join(parts)] = mean_std(rows)
    return out


def fit_per_objective(space, train, F_train, seed) -> list:
    """One XGBoost regressor per objective column on the space's encoding features (one-hot + path encoding)."""
    import xgboost as xgb

    X = np.array([space.encoding_features(a) for a in train])
    return [xgb.XGBRegressor(n_estimators=400, max_depth=4, learning_rate=0.05, random_state=seed)
            .fit(X, F_train[:, j]) for j in range(F_train.shape[1])]  # fmt: skip


def per_objective_baseline(args, space, splits) -> dict:
    """The false-dominance baseline: one XGBoost regressor per objective, Pareto ranks of the predictions."""
    from hwnas_pl.pareto import kendall_tau, pareto_ranks

    rows = []
    directions = list(DIRECTIONS.values())
    for seed, (train, test, F_train, F_test) in zip(args.seeds, splits):
        X_test = np.array([space.encoding_features(a) for a in test])
        P = np.stack([m.predict(X_test) for m in fit_per_objective(space, train, F_train, seed)], axis=1)
        rows.append({"tau_pareto_rank": kendall_tau(-pareto_ranks(P, directions), -pareto_ranks(F_test, directions))})
    return mean_std(rows)


def ceiling(args, space, splits) -> dict:
    """What accuracy ordering a Pareto-rank tau of 0.85 needs: held-out Pareto ranks recomputed with the exact
    latency and an accuracy estimate, (a) XGBoost's prediction, (b) the true accuracy plus Gaussian noise of
    ``sigma`` points (each sigma gives the estimate's own accuracy tau); and exact accuracy with XGBoost's latency."""
    from hwnas_pl.pareto import kendall_tau, pareto_ranks

    directions = list(DIRECTIONS.values())
    rows = []
    for seed, (train, test, F_train, F_test) in zip(args.seeds, splits):
        true = -pareto_ranks(F_test, directions)
        X_test = np.array([space.encoding_features(a) for a in test])
        acc, lat = (m.predict(X_test) for m in fit_per_objective(space, train, F_train, seed))
        row = {
            "xgboost_tau_accuracy": kendall_tau(acc, F_test[:, 0]),
            "xgboost_tau_latency": kendall_tau(lat, F_test[:, 1]),
            "pareto_tau_xgboost_accuracy_exact_latency": kendall_tau(
                -pareto_ranks(np.stack([acc, F_test[:, 1]], 1), directions), true),
            "pareto_tau_exact_accuracy_xgboost_latency": kendall_tau(
                -pareto_ranks(np.stack([F_test[:, 0], lat], 1), directions), true),
        }  # fmt: skip
        rng = np.random.default_rng(seed)
        for sigma in (0.25, 0.5, 1.0, 2.0):
            noisy = F_test[:, 0] + rng.normal(0.0, sigma, len(F_test))
            row[f"noise_{sigma}_tau_accuracy"] = kendall_tau(noisy, F_test[:, 0])
            row[f"noise_{sigma}_pareto_tau_exact_latency"] = kendall_tau(
                -pareto_ranks(np.stack([noisy, F_test[:, 1]], 1), directions), true)  # fmt: skip
        rows.append(row)
    return mean_std(rows)


def main() -> None:
    from hwnas_pl.spaces import NASBench201Space

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n_train", type=int, default=500)
    parser.add_argument("--n_test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--encodings", nargs="+", default=["af", "gcn", "lstm", "gcn+af", "af+gcn+lstm"])
    parser.add_argument("--lut", default="outputs/lut_cpu.json")
    parser.add_argument("--ceiling_only", action="store_true",
                        help="only the ceiling analysis: what accuracy ordering a Pareto-rank tau needs")  # fmt: skip
    args = parser.parse_args()
    space = NASBench201Space()
    everything = list(space.enumerate())
    F_all = objectives(space, everything, args.lut)
    result = {"benchmark": "hwprnas_nb201_ranking", "settings": vars(args)}
    splits = [split(args, space, everything, F_all, seed) for seed in args.seeds]
    result["ceiling"] = ceiling(args, space, splits)
    if not args.ceiling_only:
        result["encodings"] = ranking(args, space, splits)
        # the same held-out cells ranked by two independent surrogates (BANANAS one-hot + path encoding features)
        result["per_objective_xgboost"] = per_objective_baseline(args, space, splits)
    result["reference"] = ("thesis Table 3.2: accuracy Kendall tau 0.924 (3-layer FCNN, 500 cells); Fig. 3.4: AF "
                           "alone 0.61 for accuracy, GCN+AF best for accuracy, all three best overall; issue "
                           "target: tau >= 0.85 against true Pareto ranks")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
