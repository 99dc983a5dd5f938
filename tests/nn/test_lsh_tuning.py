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
    # the reported Theta is the layer's own on the same frames, each clustered on its own (batch-1 inference)
    again = reuse_error(layers[row["layer"]], inputs[row["layer"]], row["input_dim"], row["hash_size"], per_sample=True)
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
