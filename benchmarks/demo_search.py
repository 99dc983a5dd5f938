"""The demo search (NSGA-II, NAS-Bench-201 accuracy vs. LUT latency) against random search, same budget, same run.

Prints one JSON object: normalized hypervolume against the exact front for each strategy and seed, their means,
and the number of evaluations each used.

    python benchmarks/demo_search.py --budget 1000 --seeds 0 1 2
"""

import argparse
import json
import tempfile

import numpy as np

from hwnas_pl.evaluators.lut import LatencyLUT
from hwnas_pl.evaluators.nasbench201 import NASBench201TableModel
from hwnas_pl.search.runner import SearchRunner
from hwnas_pl.search.strategies import NSGA2Search, RandomSearch
from hwnas_pl.spaces import NASBench201Space


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lut", default="outputs/lut_cpu.json", help="the demo's LUT (built if missing)")
    args = parser.parse_args()
    space = NASBench201Space()
    evaluators = [NASBench201TableModel(space), LatencyLUT(space, args.lut, threads=1)]
    objectives = {"baseline_acc": "max", "latency_ms": "min"}
    result: dict = {"benchmark": "demo_search", "budget": args.budget, "objectives": objectives}
    for name, make in (("nsga2", lambda: NSGA2Search(space, 50)), ("random", lambda: RandomSearch(space, 50))):
        scores = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as out:
                runner = SearchRunner(space, make(), evaluators, objectives, args.budget, out, seed,
                                      reference_front=True, progress=False)  # fmt: skip
                res = runner.run()
            scores.append(res.normalized_hypervolume)
            result[f"{name}_evaluations"] = res.n_evaluations
        result[name] = {"normalized_hypervolume": scores, "mean": float(np.mean(scores))}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
