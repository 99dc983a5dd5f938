"""The constraint channel (G <= 0 feasible), search as a library call, search callbacks, strategy state."""

import json
import pickle

import numpy as np
import pytest

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.evaluators.lut import LatencyLUT
from hwnas_pl.evaluators.nasbench201 import NASBench201TableModel
from hwnas_pl.pareto import is_non_dominated
from hwnas_pl.search.constraints import Constraint, as_penalty, constraint_matrix, parse_constraints
from hwnas_pl.search.minimize import SearchCallback, minimize
from hwnas_pl.search.runner import SearchRunner
from hwnas_pl.search.strategies import NSGA2Search, RandomSearch
from hwnas_pl.spaces import NASBench201Space

OBJECTIVES = {"baseline_acc": "max", "latency_ms": "min"}


@pytest.fixture(scope="module")
def space():
    return NASBench201Space()


@pytest.fixture(scope="module")
def lut(space, tmp_path_factory):
    """A latency LUT of this machine, measured once for every op of the space at 16x16 inputs."""
    table = LatencyLUT(space, tmp_path_factory.mktemp("lut") / "lut.json", threads=1, input_shape=(3, 16, 16),
                       repeats=3, warmup=1)  # fmt: skip
    table.build_for(space.sample(60, np.random.default_rng(0), "lhs"))
    return table


@pytest.fixture(scope="module")
def evaluators(space, lut):
    return [NASBench201TableModel(space), lut]


def test_constraint_values_follow_pymoos_convention():
    rows = [{"lat": 3.0, "acc": 90.0}, {"lat": 4.0, "acc": 80.0}, {"lat": 5.0, "acc": 95.0}]
    cons = parse_constraints({"lat": {"<=": 4.0}, "acc": {">": 80.0}})
    assert [str(c) for c in cons] == ["lat <= 4", "acc > 80"]
    G = constraint_matrix(rows, cons)
    assert G[:, 0].tolist() == [-1.0, 0.0, 1.0]  # value - bound
    assert G[0, 1] == -10.0 and G[2, 1] == -15.0  # bound - value
    assert 0 < G[1, 1] < 1e-300  # the bound itself breaks a strict budget
    assert ((G <= 0).all(axis=1)).tolist() == [True, False, False]
    # penalty: the summed violation added to every objective (HW-EvRSNAS Eq. 4-5, minimised)
    F = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    assert as_penalty(F, np.array([[-1.0, -2.0], [0.0, 0.5], [1.0, 2.0]]), weight=2.0).tolist() == [
        [1.0, 2.0],
        [2.0, 3.0],
        [7.0, 8.0],
    ]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"latency_ms": {"=<": 4}}, "Constraint on 'latency_ms' has operator '=<'; expected one of <=, <, >=, >."),
        ({"latency_ms": 4.0}, "Constraint on 'latency_ms' is 4.0; expected a mapping of operator to bound"),
        ({"latency_ms": {"<=": "fast"}}, "Constraint 'latency_ms <=' has bound 'fast'; expected a number."),
    ],
)
def test_bad_constraints_get_one_sentence(spec, message):
    with pytest.raises(ConfigError) as err:
        parse_constraints(spec)
    assert str(err.value).startswith(message)


def test_constraint_on_a_metric_no_evaluator_computes(space, evaluators):
    with pytest.raises(ConfigError, match="Constraint on 'energy_mj' names a metric no evaluator computes"):
        minimize(space, RandomSearch(space, 10), evaluators, OBJECTIVES, {"energy_mj": {"<=": 1}}, 10)


@pytest.mark.parametrize("handling", ["native", "penalty"])
def test_every_front_member_of_a_latency_constrained_search_meets_the_budget(space, evaluators, handling):
    archs = list(space.enumerate())
    latency = evaluators[1].evaluate(archs)["latency_ms"]
    budget = float(np.quantile(latency, 0.3))  # 70 % of the space is over budget
    free = minimize(space, NSGA2Search(space, 40), evaluators, OBJECTIVES, max_evaluations=600, seed=0)
    assert any(p["latency_ms"] > budget for p in free.front)  # the budget matters
    strategy = NSGA2Search(space, 40, constraint_handling=handling)
    res = minimize(space, strategy, evaluators, OBJECTIVES, {"latency_ms": {"<=": budget}}, 600, seed=0,
                   reference_front=True)  # fmt: skip
    assert res.front and all(p["latency_ms"] <= budget for p in res.front)
    # the front is exactly the non-dominated subset of the feasible evaluations
    ok = [h for h in res.history if h["feasible"]]
    assert len(ok) == res.n_feasible and all((h["latency_ms"] <= budget) == h["feasible"] for h in res.history)
    F = np.array([[h["baseline_acc"], h["latency_ms"]] for h in ok])
    best = np.flatnonzero(is_non_dominated(F, ["max", "min"]))
    assert {p["arch"] for p in res.front} == {ok[i]["arch"] for i in best}
    # the exact front is the constrained one: every member within the budget, and the search comes close to it
    assert (res.true_front[:, 1] <= budget).all() and res.normalized_hypervolume > 0.9
    # the search spends its evaluations where the budget holds: more feasible than a random sample's 30 %
    assert res.n_feasible / res.n_evaluations > 0.5


def test_minimize_writes_no_files_and_calls_back_in_order(space, tmp_path):
    calls = []

    class Recorder(SearchCallback):
        def on_search_start(self, search):
            calls.append(("start", len(search.history)))

        def on_evaluated(self, search, archs):
            calls.append(("evaluated", len(archs)))

        def on_generation_end(self, search):
            calls.append(("generation", search.generation))

        def on_search_end(self, search, result):
            calls.append(("end", result.n_evaluations))

    before = set(tmp_path.rglob("*"))
    evaluators = [NASBench201TableModel(space), AnalyticCostModel(space)]
    res = minimize(space, RandomSearch(space, 20), evaluators, {"baseline_acc": "max", "params": "min"},
                   max_evaluations=50, callbacks=[Recorder()])  # fmt: skip
    assert set(tmp_path.rglob("*")) == before and res.output_dir is None
    assert calls == [("start", 0), ("evaluated", 20), ("generation", 1), ("evaluated", 20), ("generation", 2),
                     ("evaluated", 10), ("end", 50)]  # fmt: skip


class Keep(SearchCallback):
    """Keeps the pickled search state of every generation."""

    def __init__(self):
        self.states = []

    def on_generation_end(self, search):
        self.states.append(pickle.dumps(search.state_dict()))


def test_strategy_state_round_trips_and_resumes_exactly(space):
    evaluators = [NASBench201TableModel(space), AnalyticCostModel(space)]
    objectives = {"baseline_acc": "max", "params": "min"}
    for make in (lambda: NSGA2Search(space, 20), lambda: RandomSearch(space, 20, "lhs")):
        straight = minimize(space, make(), evaluators, objectives, max_evaluations=100, seed=4)
        keep = Keep()
        minimize(space, make(), evaluators, objectives, max_evaluations=40, seed=4, callbacks=[keep])
        state = pickle.loads(keep.states[-1])
        assert state["version"] == 2 and set(state["strategy"]) == {"base", "strategy"}
        resumed = minimize(space, make(), evaluators, objectives, max_evaluations=100, seed=4, state=state)
        assert [h["arch"] for h in resumed.history] == [h["arch"] for h in straight.history]


def test_a_version1_search_state_still_resumes(space, tmp_path):
    """search_state.pkl files written before search callbacks pickled the whole strategy; they keep loading."""
    evaluators = [NASBench201TableModel(space), AnalyticCostModel(space)]
    objectives = {"baseline_acc": "max", "params": "min"}
    full = SearchRunner(space, NSGA2Search(space, 20), evaluators, objectives, 100, str(tmp_path / "full"),
                        progress=False)  # fmt: skip
    full.run()
    part = SearchRunner(space, NSGA2Search(space, 20), evaluators, objectives, 40, str(tmp_path / "part"),
                        progress=False)  # fmt: skip
    part.run()
    state = part.search.state_dict()
    old = {k: state[k] for k in ("space", "objectives", "seed", "generation", "history", "cache")}
    (tmp_path / "part" / "search_state.pkl").write_bytes(pickle.dumps({**old, "version": 1, "strategy": part.strategy}))
    resumed = SearchRunner(space, NSGA2Search(space, 20), evaluators, objectives, 100, str(tmp_path / "part"),
                           progress=False)  # fmt: skip
    resumed.run(resume=True)
    assert [h["arch"] for h in resumed.history] == [h["arch"] for h in full.history]


def test_runner_writes_the_constrained_summary(space, evaluators, tmp_path):
    sample = space.sample(50, np.random.default_rng(1))
    budget = round(float(np.median(evaluators[1].evaluate(sample)["latency_ms"])), 3)
    runner = SearchRunner(space, NSGA2Search(space, 20), evaluators, OBJECTIVES, 60, str(tmp_path), progress=False,
                          constraints={"latency_ms": {"<=": budget}})  # fmt: skip
    runner.run()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["constraints"] == [f"latency_ms <= {budget:g}"]
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert rows[0].endswith(",feasible") and summary["n_feasible"] == sum(r.endswith("True") for r in rows[1:])
    assert 0 < summary["n_feasible"] < 60
    front = json.loads((tmp_path / "pareto_front.json").read_text())
    assert front and all(p["latency_ms"] <= budget for p in front)
    with pytest.raises(Exception, match=rf"and constraints \['latency_ms <= {budget:g}'\]; this run is"):
        SearchRunner(space, NSGA2Search(space, 20), evaluators, OBJECTIVES, 80, str(tmp_path), progress=False).run(
            resume=True
        )


def test_constraint_dataclass_refuses_a_nan_bound():
    with pytest.raises(ConfigError, match="needs a finite bound"):
        Constraint("latency_ms", "<=", float("nan"))


def test_a_new_search_refuses_a_folder_with_another_searchs_results(space, tmp_path):
    evaluators = [NASBench201TableModel(space), AnalyticCostModel(space)]
    objectives = {"baseline_acc": "max", "params": "min"}

    def runner(**kw):
        return SearchRunner(space, RandomSearch(space, 20), evaluators, objectives, 40, str(tmp_path), progress=False,
                            **kw)  # fmt: skip

    runner().run()
    with pytest.raises(UserInputError, match="already holds a search's results \\(search_state.pkl, summary.json"):
        runner().run()
    (tmp_path / "pareto_front.png").write_bytes(b"stale")
    again = runner(overwrite=True).run()  # replaced: every file is the new run's
    assert again.n_evaluations == 40 and (tmp_path / "pareto_front.png").read_bytes() != b"stale"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_a_resumed_search_counts_all_its_seconds_and_continues_its_wandb_run(space, tmp_path):
    evaluators = [NASBench201TableModel(space), AnalyticCostModel(space)]
    objectives = {"baseline_acc": "max", "params": "min"}
    wandb_args = {"project": "hwnas", "mode": "offline"}
    first = SearchRunner(space, NSGA2Search(space, 20), evaluators, objectives, 40, str(tmp_path), progress=False,
                         wandb=wandb_args)  # fmt: skip
    first.run()
    state = pickle.loads((tmp_path / "search_state.pkl").read_bytes())
    run_id = next(v["run_id"] for k, v in state["callbacks"].items() if k.endswith("WandbSearchLogger"))
    assert run_id and state["seconds"] > 0
    second = SearchRunner(space, NSGA2Search(space, 20), evaluators, objectives, 80, str(tmp_path), progress=False,
                          wandb=wandb_args)  # fmt: skip
    result = second.run(resume=True)
    logger = next(cb for cb in second.search.callbacks if type(cb).__name__ == "WandbSearchLogger")
    assert logger.run_id == run_id  # the same W&B run, not a second one
    assert result.seconds >= state["seconds"]  # the first run's time is counted
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seconds"] == pytest.approx(result.seconds)


@pytest.mark.parametrize("reference_front", [False, True])
def test_one_reference_point_for_every_hypervolume_a_search_reports(space, reference_front):
    """The progress curve (W&B's search/hypervolume) and the result share one reference point: it only grows and
    ends at the result's hypervolume."""

    class Curve(SearchCallback):
        def __init__(self):
            self.hv, self.refs = [], []

        def on_generation_end(self, search):
            self.hv.append(search.history_hypervolume())
            self.refs.append(search.hv_reference().tolist())

    curve = Curve()
    evaluators = [NASBench201TableModel(space), AnalyticCostModel(space)]
    result = minimize(space, NSGA2Search(space, 20), evaluators, {"baseline_acc": "max", "params": "min"},
                      max_evaluations=100, callbacks=[curve], reference_front=reference_front)  # fmt: skip
    assert len(curve.hv) == 5 and all(r == curve.refs[0] for r in curve.refs) == (
        curve.refs[0] == result.reference_point
    )
    assert all(a <= b + 1e-9 for a, b in zip(curve.hv, curve.hv[1:]))
    assert curve.hv[-1] == pytest.approx(result.hypervolume, rel=1e-12)
