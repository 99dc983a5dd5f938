import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import CONFIGS, REPO, hwnas_env

from hwnas_pl.cli import cli_main
from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.evaluators.nasbench201 import NASBench201TableModel
from hwnas_pl.pareto import is_non_dominated
from hwnas_pl.search.runner import SearchRunner
from hwnas_pl.search.strategies import NSGA2Search, RandomSearch
from hwnas_pl.spaces import NASBench201Space

OBJECTIVES = {"baseline_acc": "max", "params": "min"}


@pytest.fixture(scope="module")
def space():
    return NASBench201Space()


@pytest.fixture(scope="module")
def evaluators(space):
    return [NASBench201TableModel(space), AnalyticCostModel(space)]


def run(space, evaluators, tmp_path, strategy="nsga2", budget=200, seed=0, resume=False, **kw):
    strat = NSGA2Search(space, 50) if strategy == "nsga2" else RandomSearch(space, 50)
    runner = SearchRunner(space, strat, evaluators, OBJECTIVES, budget, str(tmp_path), seed, progress=False, **kw)
    return runner, runner.run(resume=resume)


def test_outputs_and_budget(space, evaluators, tmp_path):
    runner, result = run(space, evaluators, tmp_path, budget=130)
    assert result.n_evaluations == 130 == len(runner.history)  # never more than the budget
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert len(rows) == 130 and len({r["arch"] for r in rows}) == 130
    assert set(rows[0]) == {"eval", "generation", "arch", "baseline_acc", "params", "macs", "flops", "memory_mb"}
    front = json.loads((tmp_path / "pareto_front.json").read_text())
    assert front and all(set(p) == {"arch", "baseline_acc", "params"} for p in front)
    # the front is exactly the non-dominated subset of everything evaluated
    F = np.array([[float(r["baseline_acc"]), float(r["params"])] for r in rows])
    expected = {rows[i]["arch"] for i in np.flatnonzero(is_non_dominated(F, ["max", "min"]))}
    assert {p["arch"] for p in front} == expected
    assert (tmp_path / "pareto_front.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_evaluations"] == 130 and summary["hypervolume"] > 0


def test_same_seed_same_front_other_seed_other_front(space, evaluators, tmp_path):
    fronts = [
        [p["arch"] for p in run(space, evaluators, tmp_path / f"r{i}", seed=seed)[1].front]
        for i, seed in enumerate((1, 1, 2))
    ]
    assert fronts[0] == fronts[1] and fronts[0] != fronts[2]


def test_nsga2_beats_random_and_nears_the_exact_front(space, evaluators, tmp_path):
    _, nsga = run(space, evaluators, tmp_path / "n", budget=500, reference_front=True)
    _, rand = run(space, evaluators, tmp_path / "r", "random", budget=500, reference_front=True)
    assert nsga.normalized_hypervolume >= 0.99
    assert nsga.normalized_hypervolume >= rand.normalized_hypervolume


def test_resume_continues_exactly(space, evaluators, tmp_path):
    """A run stopped at 120 evaluations and resumed to 260 evaluates what an uninterrupted 260-run does."""
    full, _ = run(space, evaluators, tmp_path / "full", budget=260)
    run(space, evaluators, tmp_path / "part", budget=120)
    resumed, _ = run(space, evaluators, tmp_path / "part", budget=260, resume=True)
    assert [h["arch"] for h in resumed.history] == [h["arch"] for h in full.history]


def test_resume_errors(space, evaluators, tmp_path):
    with pytest.raises(UserInputError, match="Cannot resume: '.*search_state.pkl' does not exist"):
        run(space, evaluators, tmp_path / "none", resume=True)
    run(space, evaluators, tmp_path / "a", budget=60)
    runner = SearchRunner(space, NSGA2Search(space), evaluators, {"baseline_acc": "max"}, 100, str(tmp_path / "a"))
    with pytest.raises(UserInputError, match=r"with objectives \{'baseline_acc': 'max', 'params': 'min'\}"):
        runner.run(resume=True)


def test_unknown_objective(space, evaluators):
    with pytest.raises(ConfigError, match="Objective 'latency_ms' is not computed by any evaluator; expected one of"):
        SearchRunner(space, NSGA2Search(space), evaluators, {"latency_ms": "min"})


def test_table_refuses_other_spaces():
    class OtherSpace:
        name = "mbconv"

    with pytest.raises(ConfigError, match="answers for the nasbench201 space only, not 'mbconv'"):
        NASBench201TableModel(OtherSpace())


SMALL = """
space: {class_path: NASBench201Space}
strategy: {class_path: hwnas_pl.search.strategies.NSGA2Search, init_args: {batch_size: 20}}
evaluators:
  - {class_path: hwnas_pl.evaluators.nasbench201.NASBench201TableModel}
  - {class_path: hwnas_pl.evaluators.analytic.AnalyticCostModel}
objectives: {baseline_acc: max, params: min}
max_evaluations: 60
output_dir: out
progress: false
"""


def test_cli_search_and_its_errors(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(SMALL)
    cli_main(["search", "--config", str(tmp_path / "s.yaml")])
    out = capsys.readouterr().out
    assert "hwnas search finished: 60 evaluations" in out and (tmp_path / "out" / "pareto_front.json").is_file()
    with pytest.raises(SystemExit):
        cli_main(["search", "--config", str(tmp_path / "s.yaml"), "--objectives", "{energy: min}"])
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith("hwnas: error: Objective 'energy' is not computed by any evaluator")
    )
    with pytest.raises(SystemExit):
        cli_main(["search", "--config", str(tmp_path / "s.yaml"), "--max_evaluationz", "5"])
    assert capsys.readouterr().err.strip().endswith("Did you mean 'max_evaluations'?")


@pytest.mark.parametrize("path", sorted((CONFIGS / "search").glob("*.yaml")), ids=lambda p: p.name)
def test_search_configs_parse(path, tmp_path):
    from jsonargparse import ActionConfigFile

    from hwnas_pl.cli import CommandParser

    parser = CommandParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(SearchRunner, as_group=False, sub_configs=True)
    cfg = parser.parse_args(["--config", str(path), "--output_dir", str(tmp_path)])
    assert cfg.max_evaluations > 0 and cfg.objectives


SEARCH_GROUPS = sorted(
    p for group in ("space", "strategy", "evaluators") for p in (CONFIGS / "search" / group).glob("*.yaml")
)


@pytest.mark.parametrize("path", SEARCH_GROUPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_search_groups_compose_with_the_demo(path, tmp_path):
    from jsonargparse import ActionConfigFile

    from hwnas_pl.cli import CommandParser

    parser = CommandParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(SearchRunner, as_group=False, sub_configs=True)
    demo = CONFIGS / "search" / "nb201_nsga2_lut.yaml"
    cfg = parser.parse_args(["--config", str(demo), f"--{path.parent.name}", str(path), "--output_dir", str(tmp_path)])
    given = yaml.safe_load(path.read_text())
    got = cfg[path.parent.name]
    names = [e["class_path"] for e in given] if isinstance(given, list) else [given["class_path"]]
    found = [e.class_path for e in got] if isinstance(got, list) else [got.class_path]
    assert [f.rsplit(".", 1)[1] for f in found] == [n.rsplit(".", 1)[1] for n in names]  # jsonargparse shortens paths
    assert len(SEARCH_GROUPS) >= 4


@pytest.mark.ddp
@pytest.mark.slow
def test_evaluation_is_sharded_over_two_gloo_ranks(tmp_path):
    config = (
        SMALL.replace("output_dir: out", f"output_dir: {tmp_path / 'ddp'}")
        .replace(
            "  - {class_path: hwnas_pl.evaluators.analytic.AnalyticCostModel}",
            f"  - {{class_path: rank_counting.RankRecordingCost, init_args: {{log_dir: {tmp_path / 'ranks'}}}}}",
        )
        .replace("params: min", "n_conv: min")
    )
    (tmp_path / "s.yaml").write_text(config)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "hwnas_pl", "search", "--config", str(tmp_path / "s.yaml")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=hwnas_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    per_rank = [set(map(json.loads, (tmp_path / "ranks" / f"rank{r}.jsonl").read_text().split())) for r in (0, 1)]
    history = {r["arch"] for r in csv.DictReader((tmp_path / "ddp" / "history.csv").open())}
    assert per_rank[0] and per_rank[1] and not per_rank[0] & per_rank[1]  # each architecture evaluated once
    assert per_rank[0] | per_rank[1] >= history and len(history) == 60
    assert proc.stdout.count("hwnas search finished") == 1  # rank 0 reports
    # the same search in one process finds the same front
    single = config.replace(str(tmp_path / "ddp"), str(tmp_path / "single")).replace("/ranks", "/ranks1")
    (tmp_path / "s1.yaml").write_text(single)
    subprocess.run([sys.executable, "-m", "hwnas_pl", "search", "--config", str(tmp_path / "s1.yaml")], cwd=tmp_path,
                   env={**hwnas_env(), "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
                   check=True, capture_output=True)  # fmt: skip
    fronts = [json.loads((tmp_path / d / "pareto_front.json").read_text()) for d in ("ddp", "single")]
    assert fronts[0] == fronts[1]


def test_bench_lut_command(tmp_path, capsys):
    out = tmp_path / "lut.json"
    args = ["bench", "lut", "--samples", "3", "--repeats", "2", "--threads", "1", "--output", str(out)]
    cli_main(args)
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["entries"] == len(json.loads(out.read_text())["entries"]) > 10 and report["threads"] == 1
    with pytest.raises(SystemExit):
        cli_main([*args, "--batch_size", "4"])
    assert "was measured for another device profile (batch_size: 1 in the file, 4 here)" in capsys.readouterr().err


def test_help_names_the_search_commands():
    out = subprocess.run([sys.executable, "-m", "hwnas_pl", "--help"], capture_output=True, text=True).stdout
    assert "hwnas search --config" in " ".join(out.split()) and "hwnas bench lut" in " ".join(out.split())


def test_max_evaluations_is_refused_before_any_evaluator_is_built(tmp_path, capsys):
    """The budget check comes first: an evaluator that would fail (or take minutes) to build is never reached."""
    config = SMALL.replace(
        "  - {class_path: hwnas_pl.evaluators.analytic.AnalyticCostModel}",
        f"  - {{class_path: hwnas_pl.evaluators.tables.TableCostModel, init_args: {{path: {tmp_path / 'none.csv'}}}}}",
    )
    (tmp_path / "s.yaml").write_text(config)
    with pytest.raises(SystemExit):
        cli_main(["search", "--config", str(tmp_path / "s.yaml"), "--max_evaluations", "0"])
    assert capsys.readouterr().err.strip().splitlines()[-1] == "hwnas: error: max_evaluations must be >= 1, got 0."


def test_the_pareto_plot_reads_like_a_figure_of_a_paper(space, evaluators, tmp_path):
    from hwnas_pl.search.callbacks import ParetoPlot, metric_label

    runner, result = run(space, evaluators, tmp_path, budget=200, reference_front=True)
    fig = ParetoPlot(tmp_path / "p.png").draw(runner.search, result)
    zoomed, whole = fig.axes
    assert fig._suptitle.get_text() == (
        f"nasbench201 · NSGA2Search · seed 0 · 200 evaluations · normalized HV {result.normalized_hypervolume:.4f}"
    )
    assert zoomed.get_xlabel() == metric_label("baseline_acc", "max") == "baseline acc (%, higher is better)"
    assert zoomed.get_ylabel() == "params (lower is better)"
    front = np.array([[p["baseline_acc"], p["params"]] for p in result.front])
    (x0, x1), (y0, y1) = zoomed.get_xlim(), zoomed.get_ylim()
    assert (front[:, 0] >= x0).all() and (front[:, 0] <= x1).all()
    assert (front[:, 1] >= y0).all() and (front[:, 1] <= y1).all()
    accs = np.array([h["baseline_acc"] for h in result.history])
    assert x0 > accs.min() and whole.get_xlim()[0] <= accs.min()  # chance-level cells only in the whole-cloud panel


def test_search_help_lists_every_strategy_and_evaluator():
    out = subprocess.run([sys.executable, "-m", "hwnas_pl", "search", "--help"], capture_output=True, text=True).stdout
    flat = "".join(out.split())
    names = ["NSGA2Search", "RandomSearch", "AnalogNASEvolution", "LatencyLUT", "NASBench201TableModel"]
    names += ["NASBench201AnalogModel", "AnalogSurrogate", "FeaturePredictor", "AnalogTrainingEvaluator"]
    assert [n for n in names if n not in flat] == []


def test_an_unknown_key_inside_a_search_class_gets_the_fit_sentence(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(SMALL.replace("init_args: {batch_size: 20}", "init_args: {batch_sise: 20}"))
    with pytest.raises(SystemExit):
        cli_main(["search", "--config", str(tmp_path / "s.yaml")])
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "hwnas: error: 'batch_sise' is not an argument of hwnas_pl.search.strategies.NSGA2Search under config key "
        "'strategy'; expected one of: space, batch_size, crossover_prob, mutation_prob, sampling, "
        "constraint_handling, penalty_weight, generations. Did you mean 'batch_size'?"
    )


@pytest.mark.parametrize("generations, told", [(0, 1), (3, 4)])
def test_nsga2_stops_after_its_generations_whatever_the_budget(space, evaluators, generations, told):
    from hwnas_pl.search.minimize import minimize

    # a budget the space could not fill without re-proposing: the generation limit ends the search
    nsga = NSGA2Search(space, 20, generations=generations)
    res = minimize(space, nsga, evaluators, OBJECTIVES, max_evaluations=15625)
    assert res.generations == told and res.n_evaluations <= 20 * told
    with pytest.raises(ConfigError, match="generations must be >= 0"):
        NSGA2Search(space, generations=-1)
