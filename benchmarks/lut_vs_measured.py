"""Per-op LUT vs measured end-to-end latency on random NAS-Bench-201 networks on this machine's CPU.

Prints one JSON object: Kendall tau-b and mean absolute percentage error (MAPE) of the LUT estimate against the
measured latency (median or min of the timed calls; min resists interference on a shared machine), and the tau
between two independent measurements of the same networks: the noise floor no estimator can beat.

    python benchmarks/lut_vs_measured.py --n 200 --threads 1 --batch_size 8
"""

import argparse
import json
import time

import numpy as np
import torch

from hwnas_pl.evaluators.latency import MeasuredLatencyModel
from hwnas_pl.evaluators.lut import LatencyLUT
from hwnas_pl.pareto import kendall_tau
from hwnas_pl.spaces import NASBench201Space


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--statistic", default="min", choices=["median", "min"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = NASBench201Space()
    archs = space.sample(args.n, np.random.default_rng(args.seed), "lhs")
    start = time.perf_counter()
    lut = LatencyLUT(space, None, threads=args.threads, batch_size=args.batch_size, repeats=args.repeats,
                     statistic=args.statistic)  # fmt: skip
    estimate = lut.evaluate(archs)["latency_ms"]
    lut_seconds = time.perf_counter() - start
    measure = MeasuredLatencyModel(space, threads=args.threads, batch_size=args.batch_size, repeats=args.repeats,
                                   statistic=args.statistic)  # fmt: skip
    start = time.perf_counter()
    first = measure.evaluate(archs)["latency_ms"]
    measure_seconds = time.perf_counter() - start
    second = measure.evaluate(archs)["latency_ms"]
    measured = (first + second) / 2
    print(
        json.dumps(
            {
                "benchmark": "lut_vs_measured",
                "device": lut.profile["device"],
                "threads": args.threads,
                "batch_size": args.batch_size,
                "statistic": args.statistic,
                "n_networks": args.n,
                "lut_entries": len(lut.entries),
                "kendall_tau": kendall_tau(estimate, measured),
                "mape": float(np.mean(np.abs(estimate - measured) / measured)),
                "noise_floor_kendall_tau": kendall_tau(first, second),
                "measured_ms_median": float(np.median(measured)),
                "lut_build_and_estimate_s": lut_seconds,
                "measure_all_once_s": measure_seconds,
                "speedup_lut_vs_measurement": measure_seconds / max(lut_seconds, 1e-9),
            }
        )
    )


if __name__ == "__main__":
    main()
