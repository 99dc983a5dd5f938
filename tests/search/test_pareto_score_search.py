"""ParetoScoreSearch (HW-PR-NAS's predictor refit in rounds of true evaluations): what each round asks, the budget,
how near the front its rounds measure on NAS-Bench-201 (accuracy vs FLOPs), resume, and one-sentence errors."""

import pickle

import numpy as np
import pytest

from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.evaluators.nasbench201 import NASBench201TableModel
from hwnas_pl.pareto import kendall_tau, pareto_ranks
from hwnas_pl.search.minimize import minimize
from hwnas_pl.search.pareto_score_search import ParetoScoreSearch, fit_pareto_score
from hwnas_pl.spaces import NASBench201Space

SPACE = NASBench201Space()
OBJECTIVES = {"baseline_acc": "max", "flops": "min"}


@pytest.fixture(scope="module")
def models():
    return [NASBench201TableModel(SPACE, metrics=["baseline_acc"]), AnalyticCostModel(SPACE)]


def minimised(models, archs):
    acc, counts = (m.evaluate(archs) for m in models)
    return np.stack([-acc["baseline_acc"], counts["flops"]], axis=1)


def test_fit_learns_the_pareto_ranks_of_unseen_cells(models):
    from hwnas_pl.nn.architecture_encoders import encode_architectures

    archs = list(dict.fromkeys(SPACE.sample(400, np.random.default_rng(0), "lhs")))
    views, stats = encode_architectures(SPACE, archs, (3, 32, 32), 10)
    F = minimised(models, archs)
    net = fit_pareto_score({k: v[:200] for k, v in views.items()}, stats, F[:200], epochs=20, seed=0)
    score = net({k: v[200:] for k, v in views.items()}).detach().numpy()
    # 200 held-out cells against their own fronts; chance is 0 with a deviation of 0.05
    assert kendall_tau(score, -pareto_ranks(F[200:])) > 0.3
    again = fit_pareto_score({k: v[:200] for k, v in views.items()}, stats, F[:200], epochs=20, seed=0)
    assert np.array_equal(again({k: v[200:] for k, v in views.items()}).detach().numpy(), score)  # seeded


def test_each_round_asks_the_best_scored_unmeasured_cells_within_the_budget(models):
    strategy = ParetoScoreSearch(SPACE, batch_size=20, init_size=60, epochs=10)
    res = minimize(SPACE, strategy, models, OBJECTIVES, max_evaluations=140, seed=0)
    assert res.n_evaluations == 140
    rounds = res.strategy["rounds"]
    assert [r["measured_before"] for r in rounds] == [60, 80, 100, 120]
    assert [r["candidates"] for r in rounds] == [15625 - 60, 15625 - 80, 15625 - 100, 15625 - 120]
    measured = [SPACE.from_string(row["arch"]) for row in res.history]
    # round 1 by hand: the predictor fit on the first 60 (seed 0) and the 20 best-scored others of the space
    views = strategy._encode(measured[:60])
    net = fit_pareto_score(views, strategy._stats, minimised(models, measured[:60]), epochs=10, seed=0)
    others = [a for a in SPACE.enumerate() if a not in set(measured[:60])]
    best = np.argsort(-strategy._score(net, others), kind="stable")[:20]
    assert set(measured[60:80]) == {others[i] for i in best}
    # the rounds measure cells far nearer the front than the Latin-hypercube sample: mean global Pareto rank
    # over the space's 2,284 fronts (measured with seed 0: 191 for the rounds, 743 for the first 60)
    everything = list(SPACE.enumerate())
    rank = dict(zip(everything, pareto_ranks(minimised(models, everything))))
    assert np.mean([rank[a] for a in measured[60:]]) < 0.5 * np.mean([rank[a] for a in measured[:60]])


def test_resumed_search_asks_what_an_uninterrupted_one_asks(models):
    def search():  # the GA over the score instead of the whole space, to cover that path too
        return ParetoScoreSearch(SPACE, batch_size=10, init_size=30, epochs=3, enumerate_up_to=0, ga_generations=2)

    straight = minimize(SPACE, search(), models, OBJECTIVES, max_evaluations=60, seed=4)
    first = search()
    minimize(SPACE, first, models, OBJECTIVES, max_evaluations=40, seed=4)
    resumed = search()
    resumed.setup(2, 4, OBJECTIVES)
    resumed.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    archs = resumed.ask()
    resumed.tell(archs, minimised(models, archs))
    archs = resumed.ask()
    resumed.tell(archs, minimised(models, archs))
    assert [SPACE.to_string(a) for a in resumed.archs] == [row["arch"] for row in straight.history]


def test_bad_settings_are_one_sentence(models):
    with pytest.raises(ConfigError, match="init_size >= 2, epochs >= 1 and train_batch_size >= 2; got 1, 40 and 18"):
        ParetoScoreSearch(SPACE, init_size=1)
    with pytest.raises(ConfigError, match="ranks Pareto fronts; give it two or more objectives"):
        minimize(SPACE, ParetoScoreSearch(SPACE), models[:1], {"baseline_acc": "max"}, max_evaluations=10)


def test_the_rounds_config_runs_through_the_cli_and_its_front_holds_true_values(tmp_path, capsys):
    import json

    from conftest import CONFIGS

    from hwnas_pl.cli import cli_main

    evaluators = tmp_path / "evaluators.yaml"  # the table and FLOPs instead of measuring a LUT here
    evaluators.write_text("- {class_path: hwnas_pl.evaluators.nasbench201.NASBench201TableModel, "
                          "init_args: {metrics: [baseline_acc]}}\n"
                          "- {class_path: hwnas_pl.evaluators.analytic.AnalyticCostModel}\n")  # fmt: skip
    small = ["--strategy.init_args.init_size", "20", "--strategy.init_args.batch_size", "10",
             "--strategy.init_args.epochs", "2", "--strategy.init_args.enumerate_up_to", "0",
             "--strategy.init_args.ga_generations", "2"]  # fmt: skip
    cli_main(["search", "--config", str(CONFIGS / "search" / "hwprnas_rounds_nb201.yaml"), "--evaluators",
              str(evaluators), "--objectives", "{baseline_acc: max, flops: min}", "--max_evaluations", "40",
              "--output_dir", str(tmp_path / "out"), "--reference_front", "false", *small])  # fmt: skip
    assert "hwnas search finished: 40 evaluations" in capsys.readouterr().out
    front = json.loads((tmp_path / "out" / "pareto_front.json").read_text())
    table = NASBench201TableModel(SPACE, metrics=["baseline_acc"])
    truth = table.evaluate([SPACE.from_string(p["arch"]) for p in front])["baseline_acc"]
    assert front and np.allclose([p["baseline_acc"] for p in front], truth)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["measured_before"] for r in summary["strategy"]["rounds"]] == [20, 30]
