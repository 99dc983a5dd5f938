"""Per-layer LSH tuning (Treasure What You Have Eq. 3, Fig. 6): Θ by hand, and the BO loop against grids whose
optimum is known."""

import numpy as np
import pytest
import torch
from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.lsh_tuning import _features, grid_minimize, reuse_error, tune_layer


def test_theta_by_hand():
    layer = nn.Linear(2, 2, bias=False)
    layer.weight.data = torch.eye(2)
    # two rows on one ray: every hyperplane puts them on the same side, one cluster, centroid (1.5, 1.5)
    x = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    row = reuse_error(layer, x, input_dim=2, hash_size=1)
    # outputs (1, 1), (2, 2) vs (1.5, 1.5) twice: MSE 0.25; 2 sub-vectors over 1 centroid: sigma 2
    assert row["mse"] == pytest.approx(0.25) and row["sigma"] == 2 and row["theta"] == pytest.approx(0.125)
    assert row["compression_ratio"] == pytest.approx(0.5)
    # identical rows repeated: exact, and sigma = rows / distinct rows
    x = torch.randn(4, 8).repeat(6, 1)
    row = reuse_error(nn.Linear(8, 3), x, input_dim=8, hash_size=16)
    assert row["mse"] == pytest.approx(0.0, abs=1e-12) and row["sigma"] == pytest.approx(6.0)


def test_bo_finds_the_known_optimum_of_a_smooth_grid_objective():
    grid = np.array([(L, H) for L in (2, 4, 8, 16, 32, 64) for H in range(2, 17)])
    value = np.exp((np.log2(grid[:, 0]) - 3) ** 2 + (grid[:, 1] - 9) ** 2 / 4)  # least at L 8, H 9: e^0 = 1
    order = grid_minimize(_features(grid), lambda i: float(value[i]), n_init=5, budget=15, seed=0)
    assert len(order) == len(set(order)) == 15
    assert tuple(grid[min(order, key=lambda i: value[i])]) == (8, 9)
    # 15 of 90 drawn at random find it with probability 1/6; the first 5 (random) did not
    assert (8, 9) not in {tuple(grid[i]) for i in order[:5]}


def test_tune_layer_returns_the_least_theta_it_measured_and_a_to_reuse_setting():
    torch.manual_seed(0)
    layer = nn.Linear(64, 16)
    x = torch.randn(12, 64)[torch.randint(0, 12, (1024,))] + 0.05 * torch.randn(1024, 64)
    everything = tune_layer(layer, x, input_dims=(16, 64), hash_sizes=(4, 8, 12), n_init=2, budget=100)
    assert len(everything.history) == 6  # the budget stops at the grid's size
    exhaustive = min((reuse_error(layer, x, L, H) for L in (16, 64) for H in (4, 8, 12)), key=lambda r: r["theta"])
    assert everything.best == exhaustive and everything.setting == {"input_dim": 64, "hash_size": 8}
    # within a layer NMSE budget: the most compressing setting of those within it
    rows = [reuse_error(layer, x, L, H) for L in (16, 64) for H in (4, 8, 12)]
    tau = sorted(r["nmse"] for r in rows)[2]  # three settings are within it
    bounded = tune_layer(layer, x, input_dims=(16, 64), hash_sizes=(4, 8, 12), n_init=2, budget=100, max_nmse=tau)
    assert bounded.best == max((r for r in rows if r["nmse"] <= tau), key=lambda r: r["sigma"])
    with pytest.raises(ConfigError, match="1 <= n_init <= budget, got n_init 5 and budget 3"):
        tune_layer(layer, x, n_init=5, budget=3)
    with pytest.raises(ConfigError, match="max_nmse must be > 0, got 0.0"):
        tune_layer(layer, x, max_nmse=0.0)
    with pytest.raises(ConfigError, match="replace Conv2d, Linear and attention layers, got ReLU"):
        reuse_error(nn.ReLU(), x, 8, 8)


def test_cli_lsh_tune_writes_the_layers_config_bench_reuse_reads(tmp_path, capsys):
    import json

    import yaml
    from datasets import write_video

    from hwnas_pl.cli import cli_main
    from hwnas_pl.nn.lsh_tuning import layer_inputs
    from hwnas_pl.nn.reuse_timing import network_on_video

    video = write_video(tmp_path / "clip.mp4", 3, 32, 32)
    common = ["--video", str(video), "--model", "resnet18", "--height", "32", "--width", "32"]
    grid = ["--input_dims", "[4, 16]", "--hash_sizes", "[4, 8, 12]", "--n_init", "2", "--budget", "3"]
    cli_main(["lsh-tune", *common, *grid, "--frames", "2", "--workers", "2", "--output", str(tmp_path / "layers.yaml")])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    settings = yaml.safe_load((tmp_path / "layers.yaml").read_text())["layers"]
    net, _, clip = network_on_video(video, "resnet18", 32, 32, 2)
    layers, inputs = layer_inputs(net, clip)
    assert list(settings) == list(layers) == [r["layer"] for r in report["layers"]]  # every conv and the fc
    row = report["layers"][0]
    assert row["evaluations"] == 3 and row["input_dim"] in (4, 16) and row["hash_size"] in (4, 8, 12)
    # the reported Theta is the layer's own on the same frames, each clustered on its own (batch-1 inference), with
    # the hyperplanes to_reuse gives that layer (seed + its index in named_modules)
    seed = [n for n, _ in net.named_modules()].index(row["layer"])
    again = reuse_error(layers[row["layer"]], inputs[row["layer"]], row["input_dim"], row["hash_size"], seed, True)
    assert again["theta"] == pytest.approx(row["theta"])
    cli_main(["bench", "reuse", *common, "--frames", "2", "--warmup", "0", "--config", str(tmp_path / "layers.yaml")])
    bench = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    conv = next(r for r in bench["layers"] if r["layer"] == row["layer"])
    assert (conv["input_dim"], conv["hash_size"]) == (row["input_dim"], row["hash_size"])


def test_norm_buckets_in_tuning_lower_the_error_of_rows_that_differ_in_length():
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    directions = torch.randn(4, 16)
    x = directions[torch.randint(0, 4, (512,))] * torch.logspace(-1, 1, 512)[torch.randperm(512)][:, None]
    signs = reuse_error(layer, x, 16, 12)  # one cluster per direction, whatever the length: a poor mean
    normed = reuse_error(layer, x, 16, 12, norm_step=0.25)
    assert normed["nmse"] < 0.1 * signs["nmse"] and signs["compression_ratio"] > normed["compression_ratio"] > 0.5
    tuned = tune_layer(layer, x, input_dims=(8, 16), hash_sizes=(4, 12), n_init=2, budget=4, norm_step=0.25)
    assert tuned.setting["norm_step"] == 0.25 and tuned.best["norm_step"] == 0.25
    L, H = tuned.setting["input_dim"], tuned.setting["hash_size"]
    assert tuned.best["theta"] == pytest.approx(reuse_error(layer, x, L, H, norm_step=0.25)["theta"])


def test_pareto_bo_finds_a_known_front_that_random_search_of_the_same_budget_misses():
    from hwnas_pl.nn.lsh_tuning import grid_pareto
    from hwnas_pl.pareto import is_non_dominated

    grid = np.array([(L, H) for L in (2, 4, 8, 16, 32, 64) for H in range(2, 17)])
    x, h = np.log2(grid[:, 0]) / 6, (grid[:, 1] - 2) / 14
    F = np.stack([h + 0.5 * x, -h + 0.3 * x - 0.8 * (x - 0.5) ** 2], 1)  # both maximised; a trade-off in h
    front = set(np.flatnonzero(is_non_dominated(F, ["max", "max"])).tolist())
    assert len(front) == 17  # L 64 at every H, and L 16 and 32 at H 2
    order = grid_pareto(_features(grid), lambda i: F[i].tolist(), n_init=5, budget=25, seed=0)
    assert len(order) == len(set(order)) == 25
    found = len(front & set(order))
    random = len(front & set(np.random.default_rng(0).choice(len(grid), 25, replace=False).tolist()))
    assert found >= 15 and random <= 8  # 25 of 90 at random find 17 * 25 / 90 = 4.7 on average


def test_pick_for_budget_is_the_best_choice_on_the_hull_and_leaves_layers_dense_when_it_must():
    import itertools

    from hwnas_pl.nn.lsh_tuning import pick_for_budget

    def point(nmse, saved):
        return {"nmse": nmse, "macs_saved": saved, "input_dim": 4, "hash_size": int(saved)}

    fronts = {"a": [point(0.01, 10), point(0.05, 30), point(0.2, 40)], "b": [point(0.02, 5), point(0.03, 20)]}
    for budget in (0.0, 0.015, 0.04, 0.08, 0.3):
        picks = pick_for_budget(fronts, budget)
        error = sum(p["nmse"] for p in picks.values() if p is not None)
        assert error <= budget
        # by hand: every combination within the budget (None = dense)
        best = max(
            sum(p["macs_saved"] for p in combo if p is not None)
            for combo in itertools.product([None, *fronts["a"]], [None, *fronts["b"]])
            if sum(p["nmse"] for p in combo if p is not None) <= budget
        )
        assert sum(p["macs_saved"] for p in picks.values() if p is not None) == best
    assert pick_for_budget(fronts, 0.0) == {"a": None, "b": None}
    assert pick_for_budget(fronts, 0.08) == {"a": fronts["a"][1], "b": fronts["b"][1]}  # 0.05 + 0.03: 50 saved
    with pytest.raises(ConfigError, match="budget must be >= 0, got -1"):
        pick_for_budget(fronts, -1)


def test_network_budget_pick_is_measured_within_the_budget_and_front_is_non_dominated():
    from hwnas_pl.nn.lsh_tuning import fit_network_budget, network_nmse, tune_network

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 8 * 8, 10)).eval()  # fmt: skip
    frames = torch.nn.functional.avg_pool2d(torch.randn(2, 3, 16, 16), 2)
    tuned = tune_network(net, frames, input_dims=(4, 8, 16), hash_sizes=(2, 4, 8, 12), n_init=3, budget=8,
                         pareto=True)  # fmt: skip
    assert list(tuned) == ["0", "2", "5"]
    for tuning, _ in tuned.values():
        front = tuning.front

        def dominates(o, f):
            better = o["nmse"] <= f["nmse"] and o["compression_ratio"] >= f["compression_ratio"]
            return better and (o["nmse"], o["compression_ratio"]) != (f["nmse"], f["compression_ratio"])

        assert front and not any(dominates(o, f) for f in front for o in tuning.history)
        assert all(any(dominates(f, o) for f in front) for o in tuning.history if o not in front)
    layers = {n: t for n, (t, _) in tuned.items()}
    everything = network_nmse(net, frames, {n: t.setting for n, t in layers.items()})
    budget = everything / 4  # the least-Theta settings everywhere are beyond it
    pick = fit_network_budget(net, frames, layers, budget)
    assert pick.layers and pick.nmse <= budget and 0 < pick.macs_saved_fraction < 1
    assert pick.nmse == pytest.approx(network_nmse(net, frames, pick.layers))
    assert set(pick.layers) | set(pick.dense) == set(layers) and not set(pick.layers) & set(pick.dense)
    assert all(e >= 0 for _, e, _ in pick.rounds) and pick.rounds[0][0] == budget
    # every measured choice within the budget saves no more than the pick; refinement steps have no summed budget
    assert max(saved for _, e, saved in pick.rounds if e <= budget) == pick.macs_saved_fraction
    calibration = [b for b, _, _ in pick.rounds if b is not None]
    assert len(calibration) == 12 and all(b > 0 for b in calibration)
    assert pick.rounds[12:] and all(b is None for b, _, _ in pick.rounds[12:])


def test_cli_lsh_tune_pareto_with_a_network_budget_writes_layers_and_skip_that_bench_reuse_measures(tmp_path, capsys):
    import json

    import yaml
    from datasets import write_video

    from hwnas_pl.cli import cli_main

    video = write_video(tmp_path / "clip.mp4", 3, 32, 32)
    common = ["--video", str(video), "--model", "resnet18", "--height", "32", "--width", "32"]
    grid = ["--input_dims", "[8, 32]", "--hash_sizes", "[4, 8, 16]", "--n_init", "2", "--budget", "4"]
    out = tmp_path / "layers.yaml"
    cli_main(["lsh-tune", *common, *grid, "--frames", "2", "--pareto", "true", "--network_nmse", "0.05",
              "--output", str(out)])  # fmt: skip
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    settings = yaml.safe_load(out.read_text())
    assert report["network_nmse"] <= 0.05 and set(settings["skip"]) == set(report["dense"])
    assert len(settings["layers"]) + len(settings["skip"]) == len(report["layers"]) == 21  # 20 convs and the fc
    reused = [r for r in report["layers"] if not r.get("dense")]
    assert {r["layer"] for r in reused} == set(settings["layers"])
    for r in reused:  # each written setting is a point of its layer's front
        assert {"input_dim": r["input_dim"], "hash_size": r["hash_size"]} == settings["layers"][r["layer"]]
        assert any((f["input_dim"], f["hash_size"]) == (r["input_dim"], r["hash_size"]) for f in r["front"])
    # bench reuse measures the same network output NMSE on the same frames (no warm-up, the tuning frames)
    cli_main(["bench", "reuse", *common, "--frames", "2", "--warmup", "0", "--config", str(out)])
    bench = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert bench["output_nmse"] == pytest.approx(report["network_nmse"], rel=1e-3)


def test_refinement_finds_what_summed_layer_errors_miss_when_the_network_amplifies_one_layer(monkeypatch):
    import hwnas_pl.nn.lsh_tuning as tuning

    def point(nmse, saved):
        return {"input_dim": 4, "hash_size": int(saved), "nmse": nmse, "compression_ratio": saved / 100,
                "macs_saved": saved, "macs": 100}  # fmt: skip

    tuned = {n: tuning.LayerTuning(point(0.01, 10), [point(0.01, 10), point(0.02, 20)]) for n in "abc"}
    amplified = {"a": 100.0, "b": 1.0, "c": 1.0}  # the network multiplies layer a's error by 100

    def network_nmse(net, frames, layers, seed=0):
        nmse = {10: 0.01, 20: 0.02}
        return sum(amplified[n] * nmse[s["hash_size"]] for n, s in layers.items())

    monkeypatch.setattr(tuning, "network_nmse", network_nmse)
    calibrated = tuning.fit_network_budget(None, None, tuned, 0.05, refine=0)
    refined = tuning.fit_network_budget(None, None, tuned, 0.05)
    # by hand: any point of a costs >= 1.0; b and c at their top points cost 0.04 and save 40 of 300
    assert refined.layers == {"b": {"input_dim": 4, "hash_size": 20}, "c": {"input_dim": 4, "hash_size": 20}}
    assert refined.dense == ["a"] and refined.nmse == pytest.approx(0.04)
    assert refined.macs_saved_fraction == pytest.approx(40 / 300)
    assert calibrated.macs_saved_fraction < refined.macs_saved_fraction
