"""AnalogNAS surrogate (Eq. 5.2 ranker, AVM/σ regressors) and the constrained EA (Algorithm 6) on NAS-Bench-201."""

import csv
import pickle

import numpy as np
import pytest
from conftest import CONFIGS

from hwnas_pl.cli import cli_main
from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.nasbench201 import NASBench201AnalogModel, NASBench201Table
from hwnas_pl.pareto import kendall_tau
from hwnas_pl.search.analognas_evolution import AnalogNASEvolution, tau_standard_error
from hwnas_pl.search.constraints import parse_constraints
from hwnas_pl.search.runner import SearchRunner
from hwnas_pl.spaces import AnalogNASSpace, NASBench201Space
from hwnas_pl.surrogates import AnalogSurrogate, load_training_data, pairwise_hinge

OBJECTIVES = {"acc_1d": "max", "avm": "min", "sigma_1d": "min"}


class _Labels:
    def __init__(self, y):
        self.y = np.asarray(y, dtype=np.float32)

    def get_label(self):
        return self.y


@pytest.fixture(scope="module")
def space():
    return NASBench201Space()


@pytest.fixture(scope="module")
def data(space):
    archs, targets = load_training_data(space, "nasbench201", n=900, seed=0)
    return archs, targets


@pytest.fixture(scope="module")
def surrogate(space, data):
    archs, targets = data
    return AnalogSurrogate(space, rounds=200).fit(archs[:600], {t: v[:600] for t, v in targets.items()})


def test_pairwise_hinge_gradients_by_hand():
    objective = pairwise_hinge(margin=0.1)
    labels = _Labels([3.0, 2.0, 1.0])
    # every ordered pair (0>1, 0>2, 1>2) inside the margin: d/dP_i of sum max(0, m - (P_i - P_j))
    grad, hess = objective(np.zeros(3), labels)
    assert np.allclose(grad, [-1.0, 0.0, 1.0]) and np.allclose(hess, 1.0)
    grad, _ = objective(np.array([0.05, 0.0, -0.2]), labels)  # only (0, 1) still inside the margin
    assert np.allclose(grad, [-0.5, 0.5, 0.0])
    grad, _ = objective(np.array([1.0, 0.5, 0.0]), labels)  # all pairs separated by more than m: no loss
    assert np.allclose(grad, 0.0)
    grad, hess = objective(np.zeros(3), _Labels([1.0, 1.0, 0.0]))  # ties form no pair
    assert np.allclose(grad, [-0.5, -0.5, 1.0]) and np.allclose(hess, [0.5, 0.5, 1.0], atol=1e-5)


def test_table_objectives_are_the_drift_columns(space):
    table = NASBench201Table()
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    row = table.query(cell)
    hwa = NASBench201AnalogModel(space).evaluate([cell])
    assert hwa["acc_1d"][0] == row["analog_drift_86400"] and hwa["acc_30d"][0] == row["analog_drift_2592000"]
    assert hwa["avm"][0] == pytest.approx(row["analog_drift_60"] - row["analog_drift_2592000"])
    assert hwa["sigma_1d"][0] == row["analog_drift_86400_std"]
    digital = NASBench201AnalogModel(space, training="digital").evaluate([cell])
    assert digital["avm"][0] == pytest.approx(row["baseline_drift_60"] - row["baseline_drift_2592000"])
    with pytest.raises(ConfigError, match="Unknown training 'analog'"):
        NASBench201AnalogModel(space, training="analog")


def test_surrogate_ranks_held_out_cells(space, data, surrogate):
    archs, targets = data
    scores = surrogate.score(archs[600:], {t: v[600:] for t, v in targets.items()})
    # 600 training cells; the table's own trial noise caps tau near 0.82 (benchmarks/analognas_nb201.py)
    assert scores["kendall_tau_acc_1d"] > 0.6
    assert scores["kendall_tau_avm"] > 0.4 and scores["kendall_tau_sigma_1d"] > 0.4
    assert scores["rmse_avm"] < np.std(targets["avm"][600:])  # better than predicting the mean
    pred = surrogate.evaluate(archs[600:])
    assert set(pred) == {"acc_1d_score", "acc_1d", "avm", "sigma_1d"} and all(len(v) == 300 for v in pred.values())
    # acc_1d is the score mapped monotonically to accuracy points: same order, within the training range, and
    # closer to the measured accuracy than the training mean is
    order = np.argsort(pred["acc_1d_score"])
    assert np.all(np.diff(pred["acc_1d"][order]) >= 0)
    y_train = targets["acc_1d"][:600]
    assert y_train.min() <= pred["acc_1d"].min() and pred["acc_1d"].max() <= y_train.max()
    y = targets["acc_1d"][600:]
    assert scores["rmse_acc_1d"] == pytest.approx(np.sqrt(np.mean((pred["acc_1d"] - y) ** 2)))
    assert scores["rmse_acc_1d"] < 0.6 * np.sqrt(np.mean((y_train.mean() - y) ** 2))
    # the top decile's tau is computed on the 30 most accurate held-out cells
    top = np.argsort(-y, kind="stable")[:30]
    assert scores["kendall_tau_acc_1d_top10"] == pytest.approx(kendall_tau(pred["acc_1d_score"][top], y[top]))


def test_surrogate_save_load_and_wrong_inputs(space, data, surrogate, tmp_path):
    archs, _ = data
    path = surrogate.save(tmp_path / "s.pkl")
    again = AnalogSurrogate(space, path=str(path))
    for name in ("acc_1d_score", "acc_1d"):  # the booster and the calibration come back
        assert np.allclose(again.evaluate(archs[:20])[name], surrogate.evaluate(archs[:20])[name])
    with pytest.raises(UserInputError, match="was trained for something else \\(space: 'nasbench201' in the file"):
        AnalogSurrogate(AnalogNASSpace(), path=str(path))
    with pytest.raises(ConfigError, match="trained on the 'nasbench201' space; 'OC0=32,KS0=5"):
        surrogate.evaluate(["OC0=32,KS0=5,R=(3,3),B=(2,2),CT=(A,A),WF=(3,3)"])
    with pytest.raises(ConfigError, match="not trained; give train_data"):
        AnalogSurrogate(space).evaluate(archs[:2])
    with pytest.raises(ConfigError, match="Unknown surrogate loss 'mse'; expected one of: hinge, pairwise"):
        AnalogSurrogate(space, loss="mse")
    with pytest.raises(ConfigError, match="target 'avm' needs one finite value per architecture"):
        AnalogSurrogate(space).fit(archs[:3], {"acc_1d": [1, 2, 3], "avm": [1, np.nan, 2], "sigma_1d": [0, 0, 0]})
    with pytest.raises(UserInputError, match="Surrogate 'nope.pkl' does not exist"):
        AnalogSurrogate(space, path="nope.pkl")


def test_surrogate_from_csv_and_fine_tune(space, data, tmp_path):
    archs, targets = data
    path = tmp_path / "measured.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["eval", "arch", "acc_1d", "avm", "sigma_1d"])
        for i, a in enumerate(archs[:40]):
            writer.writerow([i, space.to_string(a), *(targets[t][i] for t in ("acc_1d", "avm", "sigma_1d"))])
    model = AnalogSurrogate(space, train_data=str(path), n_train=30, rounds=20, fine_tune_rounds=5)
    assert len(model.train_archs) == 30 and set(model.train_archs) <= set(archs[:40])
    before = model.boosters["avm"].num_boosted_rounds()
    first = model.train_archs[0]
    model.fine_tune([first, archs[50]], {"acc_1d": [50.0, 60.0], "avm": [1.0, 2.0], "sigma_1d": [0.1, 0.2]})
    assert len(model.train_archs) == 31 and model.train_targets["acc_1d"][0] == 50.0  # re-measured: replaced
    assert model.boosters["avm"].num_boosted_rounds() == before + 5
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,acc_1d,avm\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10,0\n")
    with pytest.raises(UserInputError, match="has no column 'sigma_1d'; expected arch,acc_1d,avm,sigma_1d"):
        load_training_data(space, str(bad))
    bad.write_text("arch,acc_1d,avm,sigma_1d\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,ten,0,0\n")
    with pytest.raises(UserInputError, match="bad.csv, line 2: acc_1d is 'ten'; expected a number"):
        load_training_data(space, str(bad))
    with pytest.raises(UserInputError, match="'missing.csv' does not exist; expected 'nasbench201' or a CSV"):
        load_training_data(space, "missing.csv")


def _copy(surrogate):
    import pickle

    return pickle.loads(pickle.dumps(surrogate))


def test_constrained_evolution_keeps_constraints_checks_and_picks(space, surrogate, tmp_path):
    model = NASBench201AnalogModel(space)
    ea = AnalogNASEvolution(space, _copy(surrogate), population_size=20, iterations=6, max_avm=5.0, check_every=3,
                            check_size=4, final_candidates=3)  # fmt: skip
    runner = SearchRunner(space, ea, [model], OBJECTIVES, 1000, str(tmp_path), seed=1, progress=False)
    runner.run()
    found = ea.summary()
    # population: full, no duplicates, every member predicted within T_AVM
    assert len(ea.population) == 20 and len(set(ea.population)) == 20
    assert (ea.predict(ea.population)[:, 2] < 5.0).all()  # columns: score, acc_1d, avm, sigma_1d
    assert [c["iteration"] for c in found["checks"]] == [3, 6] and all(c["checked"] == 4 for c in found["checks"])
    # true evaluations: two checks of 4 plus 3 final candidates, fewer when a member was measured twice
    assert found["true_evaluations"] == len(runner.history) <= 11
    top = found["top1"]
    truth = model.evaluate([top["arch"]])
    assert top["measured"]["acc_1d"] == truth["acc_1d"][0] and top["measured"]["avm"] < 5.0
    finals = top["candidates"]
    assert len(finals) == 3 and top["arch"] in [c["arch"] for c in finals]
    # the pick is the best measured ACC/σ (Eq. 5.3, σ floored at the training σ's 5th percentile) within T_AVM
    floor = np.percentile(ea.surrogate.train_targets["sigma_1d"], 5)
    assert found["fitness"] == "acc_over_sigma" and found["sigma_floor"] == pytest.approx(max(floor, 1e-3))

    def fit(c):
        return c["acc_1d"] / max(c["sigma_1d"], found["sigma_floor"])

    assert fit(top["measured"]) == max(fit(c) for c in finals if c["avm"] < 5.0)
    assert [c["acc_1d"] for c in finals] == model.evaluate([c["arch"] for c in finals])["acc_1d"].tolist()
    assert runner.strategy.ask() == []  # done


def test_constrained_evolution_resumes_exactly(space, surrogate, tmp_path):
    kw = dict(population_size=16, iterations=4, max_avm=5.0, check_every=2, check_size=4, final_candidates=2)
    model = NASBench201AnalogModel(space)

    def run(out, budget, resume=False):
        ea = AnalogNASEvolution(space, _copy(surrogate), **kw)
        runner = SearchRunner(space, ea, [model], OBJECTIVES, budget, str(out), seed=3, progress=False)
        runner.run(resume=resume)
        return runner.strategy.summary()

    straight = run(tmp_path / "a", 100)
    run(tmp_path / "b", 4)  # stops after the first check
    resumed = run(tmp_path / "b", 100, resume=True)
    assert resumed["top1"] == straight["top1"] and resumed["checks"] == straight["checks"]
    assert resumed["population"] == straight["population"]


def test_constrained_evolution_errors(space, surrogate):
    with pytest.raises(ConfigError, match="objectives \\['acc_1d', 'avm'\\] lack 'sigma_1d'"):
        AnalogNASEvolution(space, surrogate).setup(2, 0, {"acc_1d": "max", "avm": "min"})
    ea = AnalogNASEvolution(space, _copy(surrogate), population_size=10, check_size=4, max_avm=-100.0,
                            max_redraws=2)  # fmt: skip
    with pytest.raises(ConfigError, match="have a predicted AVM below max_avm=-100.0; raise max_avm"):
        ea.setup(3, 0, OBJECTIVES)
    with pytest.raises(ConfigError, match="surrogate was built for the 'nasbench201' space; the search is over"):
        AnalogNASEvolution(AnalogNASSpace(), surrogate)
    with pytest.raises(ConfigError, match="check_size \\(30\\) cannot exceed population_size \\(20\\)"):
        AnalogNASEvolution(space, surrogate, population_size=20, check_size=30)


@pytest.mark.slow
def test_cli_analognas_search(tmp_path, capsys):
    cli_main([
        "search", "--config", str(CONFIGS / "search" / "analognas_nb201.yaml"), "--output_dir", str(tmp_path),
        "--strategy.init_args.surrogate.init_args.n_train", "300", "--strategy.init_args.surrogate.init_args.rounds",
        "100", "--strategy.init_args.population_size", "30", "--strategy.init_args.iterations", "10",
        "--strategy.init_args.check_every", "5", "--strategy.init_args.check_size", "10", "--wandb", "null",
        "--progress", "false",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert "  top-1: |" in out and "(measured: acc_1d" in out
    import json

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["strategy"]["top1"]["measured"]["avm"] < 5.0 and len(summary["strategy"]["population"]) == 30


@pytest.mark.slow
def test_macro_space_trained_evaluator_feeds_the_surrogate(tmp_path):
    """LHS sample of the macro space trained with AnalogModule -> history.csv -> surrogate -> EA check on it."""
    from hwnas_pl.datamodules import DigitsDataModule
    from hwnas_pl.evaluators.analog_training import AnalogTrainingEvaluator
    from hwnas_pl.search.strategies import RandomSearch

    space = AnalogNASSpace(max_params=3000)
    data = DigitsDataModule(batch_size=64, resize=8, channels=3, seed=0)
    evaluator = AnalogTrainingEvaluator(space, data, input_shape=(3, 8, 8), digital_epochs=1, hwa_epochs=1, trials=2,
                                        limit_train_batches=3)  # fmt: skip
    runner = SearchRunner(space, RandomSearch(space, 4, "lhs"), [evaluator], OBJECTIVES, 4, str(tmp_path), 0,
                          progress=False)  # fmt: skip
    runner.run()
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert len(rows) == 4 and all(space.is_feasible(r["arch"]) for r in rows)
    for r in rows:
        assert 0 <= float(r["acc_1d"]) <= 100 and 0 <= float(r["acc_30d"]) <= 100 and float(r["sigma_1d"]) >= 0
    again = evaluator.measure(rows[0]["arch"])  # seeded: the same network measures the same
    assert again["acc_1d"] == pytest.approx(float(rows[0]["acc_1d"])) and again["avm"] == pytest.approx(
        float(rows[0]["avm"])
    )
    surrogate = AnalogSurrogate(space, train_data=str(tmp_path / "history.csv"), rounds=5, input_shape=(3, 8, 8))
    assert len(surrogate.train_archs) == 4
    assert np.isfinite(surrogate.evaluate([rows[1]["arch"]])["avm"]).all()
    with pytest.raises(ConfigError, match="hwa_epochs >= 1 and trials >= 2"):
        AnalogTrainingEvaluator(space, data, trials=1)


def test_t_avm_through_the_constraint_channel_is_max_avm(space, surrogate, tmp_path):
    """``constraints: {avm: {"<": 5}}`` drives the EA exactly as ``max_avm: 5`` did; the front meets it too."""
    kw = dict(population_size=16, iterations=4, check_every=2, check_size=4, final_candidates=3)
    model = NASBench201AnalogModel(space)
    summaries = []
    for k, (ea_kw, constraints) in enumerate([({"max_avm": 5.0}, None), ({}, {"avm": {"<": 5.0}})]):
        ea = AnalogNASEvolution(space, _copy(surrogate), **kw, **ea_kw)
        runner = SearchRunner(space, ea, [model], OBJECTIVES, 100, str(tmp_path / str(k)), seed=2, progress=False,
                              constraints=constraints)  # fmt: skip
        result = runner.run()
        summaries.append(ea.summary())
    assert summaries[0]["top1"] == summaries[1]["top1"] and summaries[0]["population"] == summaries[1]["population"]
    assert summaries[1]["constraints"] == ["avm < 5"] and summaries[1]["top1"]["measured"]["avm"] < 5.0
    assert result.front and all(p["avm"] < 5.0 for p in result.front)
    ea = AnalogNASEvolution(space, _copy(surrogate), **kw, max_avm=3.0)
    with pytest.raises(ConfigError, match="max_avm=3.0 disagrees with the search's constraint avm < 5"):
        ea.setup(3, 0, OBJECTIVES, parse_constraints({"avm": {"<": 5}}))


def test_a_version1_analognas_search_state_still_resumes(space, surrogate, tmp_path):
    """A search_state.pkl of the version that pickled the EA whole (no constraint attributes) resumes exactly."""
    import pickle

    kw = dict(population_size=16, iterations=4, max_avm=5.0, check_every=2, check_size=4, final_candidates=2,
              fitness="rank")  # fmt: skip
    model = NASBench201AnalogModel(space)

    def runner(out, budget):
        ea = AnalogNASEvolution(space, _copy(surrogate), **kw)
        return SearchRunner(space, ea, [model], OBJECTIVES, budget, str(out), seed=3, progress=False)

    straight = runner(tmp_path / "a", 100)
    straight.run()
    part = runner(tmp_path / "b", 4)
    part.run()
    old = pickle.loads(pickle.dumps(part.strategy))
    for key in ("max_avm_arg", "predicted_constraints", "constraints", "penalty_weight", "fitness", "sigma_floor",
                "time_budget", "elapsed"):  # fmt: skip
        del old.__dict__[key]  # what a version-1 pickle lacks
    state = {k: v for k, v in part.search.state_dict().items() if k not in ("strategy", "constraints")}
    state = {**state, "version": 1, "strategy": old}
    (tmp_path / "b" / "search_state.pkl").write_bytes(pickle.dumps(state))
    resumed = runner(tmp_path / "b", 100)
    resumed.run(resume=True)
    assert resumed.strategy.summary()["top1"] == straight.strategy.summary()["top1"]
    assert [h["arch"] for h in resumed.history] == [h["arch"] for h in straight.history]


def test_the_analognas_plot_draws_t_avm_and_marks_the_top1(space, surrogate, tmp_path):
    from hwnas_pl.search.callbacks import ParetoPlot

    kw = dict(population_size=16, iterations=2, check_every=2, check_size=4, final_candidates=2)
    ea = AnalogNASEvolution(space, _copy(surrogate), **kw)
    runner = SearchRunner(space, ea, [NASBench201AnalogModel(space)], OBJECTIVES, 100, str(tmp_path), seed=2,
                          progress=False, constraints={"avm": {"<": 5.0}})  # fmt: skip
    result = runner.run()
    fig = ParetoPlot(tmp_path / "p.png").draw(runner.search, result)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "budget avm < 5" in labels and "top-1 pick" in labels
    lines = [ln for ln in fig.axes[1].get_lines() if ln.get_linestyle() == "--"]
    assert len(lines) == 1 and set(lines[0].get_ydata()) == {5.0}  # avm is the y axis: a horizontal line at T_AVM


def test_fitness_is_eq_5_3s_acc_over_sigma_and_parents_are_the_fitter_half(space, surrogate):
    """fitness_of = predicted ACC_1d / max(σ, σ_floor); one step keeps the population's fitter half."""
    ea = AnalogNASEvolution(space, _copy(surrogate), population_size=20, check_size=4, max_avm=5.0, sigma_floor=0.5)
    ea.setup(3, 0, OBJECTIVES)
    pred = ea.predict(ea.population)
    assert np.allclose(ea.fitness_of(ea.population), pred[:, 1] / np.maximum(pred[:, 3], 0.5))
    fitter = [ea.population[i] for i in np.argsort(-ea.fitness_of(ea.population), kind="stable")[:10]]
    ea.step()
    assert set(fitter) <= set(ea.population)  # the parents stay (they meet T_AVM)
    rank = AnalogNASEvolution(space, _copy(surrogate), population_size=20, check_size=4, fitness="rank")
    rank.setup(3, 0, OBJECTIVES)
    assert np.array_equal(rank.fitness_of(rank.population), rank.predict(rank.population)[:, 0])
    assert tau_standard_error(20) == pytest.approx(np.sqrt(90 / 3420)) and tau_standard_error(50) < 0.1
    assert AnalogNASEvolution(space, surrogate, population_size=30).check_size == 30  # default: min(50, population)
    assert AnalogNASEvolution(space, surrogate).check_size == 50
    with pytest.raises(ConfigError, match="Unknown AnalogNAS fitness 'acc'; expected one of: acc_over_sigma, rank"):
        AnalogNASEvolution(space, surrogate, fitness="acc")
    with pytest.raises(ConfigError, match="sigma_floor must be positive or null, got 0"):
        AnalogNASEvolution(space, surrogate, sigma_floor=0)


def test_time_budget_stops_the_evolution(space, surrogate, tmp_path):
    ea = AnalogNASEvolution(space, _copy(surrogate), population_size=16, iterations=1000, check_every=100,
                            check_size=4, max_avm=5.0, time_budget=1e-6)  # fmt: skip
    runner = SearchRunner(space, ea, [NASBench201AnalogModel(space)], OBJECTIVES, 1000, str(tmp_path), seed=0,
                          progress=False)  # fmt: skip
    runner.run()
    found = ea.summary()
    # the first iteration uses up the budget: one iteration, its check, then the final pick
    assert found["iterations"] == 1 and found["stopped_by"] == "time_budget" and len(found["checks"]) == 1
    assert found["top1"]["measured"] is not None and found["evolution_seconds"] > 0
    with pytest.raises(ConfigError, match="time_budget must be positive seconds or null, got -1"):
        AnalogNASEvolution(space, surrogate, time_budget=-1)


def test_violators_are_replaced_from_their_own_hypercube():
    """On the macro space a T_AVM violator's replacement keeps its M (thesis §5.3.3), and meets T_AVM."""
    macro = AnalogNASSpace(max_params=100_000, max_main_blocks=3)
    rng = np.random.default_rng(0)
    archs = macro.sample(60, rng, "lhs")
    ks0 = np.array([a.kernel_size0 for a in archs], dtype=float)
    # a real surrogate on labels with a known rule: AVM grows with the stem's kernel (KS0 >= 5 breaks T_AVM 9)
    labels = {"acc_1d": 50 + ks0, "avm": 2 * ks0, "sigma_1d": 0.5 + ks0 / 10}
    sur = AnalogSurrogate(macro, rounds=30, input_shape=(3, 8, 8)).fit(archs, labels)
    ea = AnalogNASEvolution(macro, sur, population_size=10, check_size=2, max_avm=9.0)
    ea.setup(3, 0, OBJECTIVES)
    violators = [a for a in archs if a.kernel_size0 >= 5]
    violators = [a for a in violators if len(a.blocks) == 2][:3] + [a for a in violators if len(a.blocks) == 1][:3]
    assert (ea.predict(violators)[:, 2] >= 9.0).all()
    fresh = ea._fresh(len(violators), set(), like=violators)
    assert [len(a.blocks) for a in fresh] == [2, 2, 2, 1, 1, 1]
    assert (ea.predict(fresh)[:, 2] < 9.0).all() and all(macro.is_feasible(a) for a in fresh)
    assert all(a.kernel_size0 <= 4 for a in fresh)


def test_augmented_surrogate_takes_noise_and_tile_size_as_inputs(space, data, tmp_path):
    """Thesis §5.3.2's augmentation: rows measured under other weight noises are inputs, predictions at one point."""
    archs, targets = data
    archs, targets = archs[:300], {t: v[:300] for t, v in targets.items()}
    # fixture rows: the table's cells, and the same cells as if measured under 5x the noise (8 points less, AVM
    # doubled); the operating point is the low noise
    rows = list(zip(archs, targets["acc_1d"], targets["avm"], targets["sigma_1d"]))
    path = tmp_path / "augmented.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "acc_1d", "avm", "sigma_1d", "weight_noise", "tile_size"])
        for a, acc, avm, sig in rows:
            w.writerow([space.to_string(a), acc, avm, sig, 0.1, 512])
            w.writerow([space.to_string(a), acc - 8, 2 * avm, sig, 0.5, 512])
    low = AnalogSurrogate(space, train_data=str(path), n_train=None, rounds=150,
                          conditions={"weight_noise": 0.1, "tile_size": 512})  # fmt: skip
    assert (
        len(low.train_archs) == 600
        and low.features(archs[:3]).shape[1] == AnalogSurrogate(space).features(archs[:3]).shape[1] + 2
    )
    high = pickle.loads(pickle.dumps(low))
    high.conditions = {"weight_noise": 0.5, "tile_size": 512}
    p_low, p_high = low.evaluate(archs[:100]), high.evaluate(archs[:100])
    assert np.mean(p_low["avm"] - p_high["avm"]) < -0.5 * np.mean(targets["avm"][:100])  # the noise is an input
    assert np.mean(p_low["acc_1d"] - p_high["acc_1d"]) > 4.0
    # fine-tuning rows come without conditions: they are the operating point's, and replace its old values
    before = len(low.train_archs)
    low.fine_tune(archs[:2], {"acc_1d": [50.0, 51.0], "avm": [1.0, 1.0], "sigma_1d": [0.1, 0.1]})
    assert len(low.train_archs) == before
    k = [i for i, a in enumerate(low.train_archs) if a == archs[0] and low.train_targets["weight_noise"][i] == 0.1]
    assert len(k) == 1 and low.train_targets["acc_1d"][k[0]] == 50.0
    with pytest.raises(ConfigError, match="Unknown surrogate condition 'adc_bits'; expected some of: weight_noise"):
        AnalogSurrogate(space, conditions={"adc_bits": 8})
    with pytest.raises(ConfigError, match="needs a CSV with those columns"):
        AnalogSurrogate(space, train_data="nasbench201", conditions={"tile_size": 512})
    (tmp_path / "plain.csv").write_text("arch,acc_1d,avm,sigma_1d\n")
    with pytest.raises(UserInputError, match="has no column 'weight_noise'; expected arch,acc_1d,avm,sigma_1d,weight"):
        load_training_data(space, str(tmp_path / "plain.csv"), None, 0, ("weight_noise",))


@pytest.mark.slow
def test_trained_evaluator_augments_the_surrogate_data(tmp_path):
    """augment: each architecture measured at the operating point and under every listed noise / tile size."""
    from hwnas_pl.datamodules import DigitsDataModule
    from hwnas_pl.evaluators.analog_training import AnalogTrainingEvaluator

    space = AnalogNASSpace(max_params=3000)
    data = DigitsDataModule(batch_size=64, resize=8, channels=3, seed=0)
    out = tmp_path / "augmented.csv"
    evaluator = AnalogTrainingEvaluator(space, data, input_shape=(3, 8, 8), preset="analognas", digital_epochs=0,
                                        hwa_epochs=1, trials=2, limit_train_batches=2, weight_noise=0.1,
                                        augment={"weight_noise": [0.0, 0.5], "tile_size": [16]},
                                        augment_csv=str(out))  # fmt: skip
    archs = space.sample(2, np.random.default_rng(0), "lhs")
    measured = evaluator.evaluate(archs)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * 3  # the operating point + 2 noises x 1 tile size, per architecture
    assert [(float(r["weight_noise"]), int(r["tile_size"])) for r in rows[:3]] == [
        (0.1, 256),
        (0.0, 16),
        (0.5, 16),
    ]  # analognas: 256
    assert float(rows[0]["acc_1d"]) == pytest.approx(measured["acc_1d"][0])  # the objectives: the operating point
    assert rows[3]["arch"] == space.to_string(archs[1])
    sur = AnalogSurrogate(space, train_data=str(out), n_train=None, rounds=5, input_shape=(3, 8, 8),
                          conditions={"weight_noise": 0.1, "tile_size": 256})  # fmt: skip
    assert len(sur.train_archs) == 6 and set(sur.train_targets["tile_size"]) == {16.0, 256.0}
    with pytest.raises(ConfigError, match="augment needs augment_csv"):
        AnalogTrainingEvaluator(space, data, augment={"weight_noise": [0.2]})
    with pytest.raises(ConfigError, match="Unknown augment key 'dac_bits'"):
        AnalogTrainingEvaluator(space, data, augment={"dac_bits": [4]}, augment_csv=str(out))
