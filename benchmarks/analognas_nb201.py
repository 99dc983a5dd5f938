"""AnalogNAS on NAS-Bench-201: surrogate ranking quality and the quality of the constrained EA's pick.

1. Surrogate: Kendall tau-b of the 1-day accuracy ranker on every cell it was not trained on, overall and within
   the top decile by measured accuracy (where the EA picks), for 500/1000/1500 training cells and both ranking
   losses (Eq. 5.2 hinge, XGBoost rank:pairwise); target >= 0.8 at <= 1,500 cells.
   For scale, the table's own noise: isomorphic cells (same path encoding and counts) compute the same function,
   so predicting each from the mean of its isomorphic twins bounds what any predictor of these labels can reach.
2. EA (configs/search/analognas_nb201.yaml settings, several seeds), with Eq. 5.3's ACC/σ fitness and with the
   accuracy rank alone, each with 5 final candidates and with Algorithm 6's top-1: the pick's 30-day HWA accuracy
   percentile among all cells that meet the same AVM constraint (target: top 1%), and the true evaluations used
   (surrogate training cells + search). Beside it, random search with the same number of true evaluations, and
   the table's own best ACC/σ cell (the oracle of the fitness, σ floored as the EA floors it).

    python benchmarks/analognas_nb201.py --seeds 3
"""

import argparse
import json
import time
from collections import defaultdict

import numpy as np

from hwnas_pl.evaluators.nasbench201 import NASBench201AnalogModel
from hwnas_pl.pareto import kendall_tau
from hwnas_pl.search.analognas_evolution import AnalogNASEvolution
from hwnas_pl.search.runner import SearchRunner
from hwnas_pl.spaces import NASBench201Space
from hwnas_pl.surrogates import AnalogSurrogate
from hwnas_pl.surrogates.feature_predictor import feature_matrix

OBJECTIVES = {"acc_1d": "max", "avm": "min", "sigma_1d": "min"}


def noise_ceiling(space, archs, y):
    paths = np.array([space.encoding_features(a)[30:] for a in archs])  # the path encoding, without the op one-hot
    X = np.concatenate([feature_matrix(space, archs), paths], axis=1)
    groups = defaultdict(list)
    for i, row in enumerate(X):
        groups[row.tobytes()].append(i)
    pred = np.full(len(y), np.nan)
    for members in groups.values():
        for i in members if len(members) > 1 else []:
            pred[i] = np.mean([y[j] for j in members if j != i])
    has_twin = ~np.isnan(pred)
    return {"cells_with_twins": int(has_twin.sum()), "kendall_tau_twin_mean": kendall_tau(pred[has_twin], y[has_twin])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max_avm", type=float, default=5.0)
    parser.add_argument("--n_train", type=int, default=1000)
    args = parser.parse_args()
    space = NASBench201Space()
    model = NASBench201AnalogModel(space)
    archs = list(space.enumerate())
    truth = model.evaluate(archs)
    out = {"surrogate": {}, "noise_ceiling": noise_ceiling(space, archs, truth["acc_1d"])}

    rng = np.random.default_rng(0)
    perm = rng.permutation(len(archs))
    for n in (500, 1000, 1500):
        for loss in ("hinge", "pairwise"):
            train, test = perm[:n], perm[n:]
            start = time.perf_counter()
            sur = AnalogSurrogate(space, loss=loss)
            sur.fit([archs[i] for i in train], {t: v[train] for t, v in truth.items()})
            fit_s = time.perf_counter() - start
            scores = sur.score([archs[i] for i in test], {t: v[test] for t, v in truth.items()})
            out["surrogate"][f"{loss}_n{n}"] = {**{k: round(v, 4) for k, v in scores.items()}, "fit_s": round(fit_s, 1)}

    feasible = truth["avm"] < args.max_avm
    acc30 = truth["acc_30d"][feasible]

    def percentile(arch):
        return float((acc30 < truth["acc_30d"][space.index(arch)]).mean() * 100)

    variants = [(f, k) for f in ("acc_over_sigma", "rank") for k in (5, 1)]
    runs = {f"{f}_final_candidates_{k}": [] for f, k in variants} | {"random_same_evaluations": []}
    for seed in range(args.seeds):
        for fitness, k in variants:
            start = time.perf_counter()
            sur = AnalogSurrogate(space, train_data="nasbench201", n_train=args.n_train, seed=seed)
            ea = AnalogNASEvolution(space, sur, max_avm=args.max_avm, final_candidates=k, fitness=fitness)
            out_dir = f"outputs/bench_analognas/{seed}_{fitness}_{k}"
            runner = SearchRunner(space, ea, [model], OBJECTIVES, 1000, out_dir, seed, progress=False, overwrite=True)
            runner.run()
            found = ea.summary()
            pick = found["top1"]["arch"]
            evaluations = args.n_train + found["true_evaluations"]
            i = space.index(pick)
            runs[f"{fitness}_final_candidates_{k}"].append(
                {"seed": seed, "pick": pick, "acc_1d": float(truth["acc_1d"][i]),
                 "sigma_1d": float(truth["sigma_1d"][i]),
                 "avm": float(truth["avm"][i]), "acc_30d": float(truth["acc_30d"][i]),
                 "acc_30d_percentile": round(percentile(pick), 3), "true_evaluations": evaluations,
                 "search_evaluations": found["true_evaluations"], "sigma_floor": found["sigma_floor"],
                 "seconds": round(time.perf_counter() - start, 1),
                 "surrogate_checks_tau": [round(c["kendall_tau"], 3) for c in found["checks"]]}
            )  # fmt: skip
        # random search, same number of true evaluations, best measured 1-day accuracy within T_AVM
        draw = np.random.default_rng(100 + seed).choice(len(archs), size=evaluations, replace=False)
        ok = draw[truth["avm"][draw] < args.max_avm]
        best = ok[np.argmax(truth["acc_1d"][ok])]
        runs["random_same_evaluations"].append(
            {
                "seed": seed,
                "true_evaluations": int(evaluations),
                "acc_30d_percentile": round(percentile(archs[best]), 3),
            }  # fmt: skip
        )
    for name, rows in runs.items():
        out[name] = {"runs": rows, "mean_acc_30d_percentile": float(np.mean([r["acc_30d_percentile"] for r in rows]))}
    floor = max(float(np.percentile(truth["sigma_1d"], 5)), 1e-3)
    ratio = np.where(feasible, truth["acc_1d"] / np.maximum(truth["sigma_1d"], floor), -np.inf)
    best = int(np.argmax(ratio))
    out["oracle_acc_over_sigma"] = {"sigma_floor": round(floor, 3), "acc_1d": float(truth["acc_1d"][best]),
                                    "sigma_1d": float(truth["sigma_1d"][best]),
                                    "acc_30d_percentile": round(percentile(archs[best]), 3)}  # fmt: skip
    out["feasible_cells"] = int(feasible.sum())
    out["max_avm"] = args.max_avm
    print(json.dumps(out))


if __name__ == "__main__":
    main()
