"""XGBoost and MLP latency predictors from architecture features, on measured NAS-Bench-201 latencies (this CPU).

Prints one JSON object: RMSE (ms) and Kendall tau-b on held-out networks for each regressor, and the LUT's tau on
the same held-out networks for comparison.

    python benchmarks/latency_predictor.py --n 300 --threads 1 --batch_size 8
"""

import argparse
import json

import numpy as np
import torch

from hwnas_pl.evaluators.latency import MeasuredLatencyModel
from hwnas_pl.evaluators.lut import LatencyLUT
from hwnas_pl.pareto import kendall_tau
from hwnas_pl.spaces import NASBench201Space
from hwnas_pl.surrogates.feature_predictor import FeaturePredictor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--test_fraction", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--statistic", default="min", choices=["median", "min"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = NASBench201Space()
    archs = space.sample(args.n, np.random.default_rng(args.seed), "lhs")
    kwargs = dict(threads=args.threads, repeats=args.repeats, batch_size=args.batch_size, statistic=args.statistic)
    y = MeasuredLatencyModel(space, **kwargs).evaluate(archs)["latency_ms"]
    n_test = int(round(args.n * args.test_fraction))
    train, test = slice(0, args.n - n_test), slice(args.n - n_test, args.n)
    result = {"benchmark": "latency_predictor", "n_train": args.n - n_test, "n_test": n_test, **kwargs}
    for model in ("xgboost", "mlp"):
        for op_counts in (False, True):
            predictor = FeaturePredictor(space, "latency_ms", model, seed=args.seed, op_counts=op_counts)
            predictor.fit(archs[train], y[train])
            result[f"{model}{'_af+ops' if op_counts else '_af'}"] = predictor.score(archs[test], y[test])
    lut = LatencyLUT(space, None, **kwargs).evaluate(archs[test])["latency_ms"]
    result["lut"] = {"kendall_tau": kendall_tau(lut, y[test])}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
