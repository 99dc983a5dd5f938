"""Analog AI: presets, conversion, drift evaluation and HWA training with aihwkit's torch tiles (thesis ch. 5)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS, hwnas_env
from torch import nn

from hwnas_pl.analog import DriftResult, drift_accuracy, make_rpu_config, parse_time, time_label, to_analog
from hwnas_pl.analog.drift import DAY, MONTH, SECOND
from hwnas_pl.datamodules import DigitsDataModule
from hwnas_pl.errors import ConfigError

HWNAS = str(Path(sys.executable).parent / "hwnas")
ANALOG_CONFIG = CONFIGS / "analog_hwa_digits.yaml"


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depth-wise: aihwkit cannot map it
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


# ---------------------------------------------------------------- presets and conversion
def test_preset_overrides_reach_the_tiles():
    cfg = make_rpu_config("standard_hwa_torch", tile_size=64, weight_noise=0.1, clip=2.0, dac_bits=6, adc_bits=7)
    assert cfg.mapping.max_input_size == 64 and cfg.modifier.std_dev == 0.1
    assert cfg.clip.fixed_value == 2.0 and (cfg.forward.inp_res, cfg.forward.out_res) == (62.0, 126.0)
    net, digital = to_analog(nn.Linear(150, 10), cfg)
    assert sum(1 for _ in net.analog_tiles()) == 3  # 150 inputs over 64-row tiles
    assert digital == {}


def test_presets_say_what_they_are_and_g_max_keeps_the_noise_model():
    from aihwkit.simulator.parameters.enums import WeightModifierType

    assert make_rpu_config("analognas").modifier.type == WeightModifierType.NONE  # IBM's code: std_dev set, type NONE
    noisy = make_rpu_config("analognas", weight_noise=0.15).modifier
    assert noisy.type == WeightModifierType.ADD_NORMAL and noisy.std_dev == 0.15
    ideal = make_rpu_config("ideal", g_max=10.0).noise_model
    assert ideal.g_max == 10.0 and (ideal.prog_noise_scale, ideal.read_noise_scale, ideal.drift_scale) == (0, 0, 0)
    net, _ = to_analog(small_net(), make_rpu_config("ideal", g_max=10.0))
    x = torch.randn(8, 1, 6, 6)
    clean = net.eval()(x)
    net.program_analog_weights()
    net.drift_analog_weights(30 * 86400.0)
    torch.testing.assert_close(net(x), clean)  # still noise- and drift-free
    with pytest.warns(UserWarning, match="'standard_hwa' is now called 'standard_hwa_torch'"):
        old = make_rpu_config("standard_hwa")
    assert old.mapping.max_input_size == make_rpu_config("standard_hwa_torch").mapping.max_input_size == 512


def test_conversion_keeps_unmappable_layers_digital_and_leaves_the_original_alone():
    net = small_net()
    analog, digital = to_analog(net, make_rpu_config("ideal"))
    assert digital == {"3": "grouped convolution (groups=8)"}
    assert type(analog[0]).__name__ == "AnalogConv2d" and type(analog[3]) is nn.Conv2d
    assert type(analog[6]).__name__ == "AnalogLinear" and type(net[0]) is nn.Conv2d
    x = torch.randn(5, 1, 6, 6)
    torch.testing.assert_close(analog.eval()(x), net.eval()(x))  # ideal tiles compute what the digital net does


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_rpu_config("pcm_dream"), "Unknown analog preset 'pcm_dream'; expected one of: analognas, ideal"),
        (lambda: make_rpu_config(tile_size=0), "tile_size must be a positive integer, got 0"),
        (lambda: make_rpu_config(weight_noise=-0.1), "weight_noise must be a non-negative number"),
        (
            lambda: to_analog(nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, groups=4)), make_rpu_config()),
            "cannot map any",
        ),
        (lambda: parse_time(0), "Drift times must be positive"),
        (lambda: parse_time("-1h"), "Drift times must be positive"),
        (lambda: parse_time("1 week"), "Drift time '1 week' is not understood"),
    ],
)
def test_bad_analog_input(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


# ---------------------------------------------------------------- drift
def test_time_parsing_and_labels():
    assert [parse_time(t) for t in ("1s", "1h", "1d", "30d", "1y", 7.5)] == [1, 3600, 86400, 2592000, 31536000, 7.5]
    assert [time_label(t) for t in (1, 3600, 86400, 2592000, 31536000, 7.5)] == ["1s", "1h", "1d", "30d", "1y", "7.5s"]


def test_avm_and_sigma_follow_the_thesis_definitions():
    # two trials at 1 s, 1 day, 30 days
    result = DriftResult([SECOND, DAY, MONTH], np.array([[0.90, 0.86, 0.80], [0.92, 0.84, 0.78]]))
    summary = result.summary()
    assert summary["drift/avm"] == pytest.approx(0.91 - 0.79)  # acc(1 s) - acc(30 days)
    assert summary["drift/sigma_1d"] == pytest.approx(np.std([0.86, 0.84], ddof=1))
    assert summary["drift/acc@1d"] == pytest.approx(0.85) and set(summary) >= {"drift/acc@30d_std"}


def test_drift_evaluation_restores_the_trained_weights_and_is_seeded():
    torch.manual_seed(0)
    x = torch.randn(256, 1, 6, 6)
    y = small_net().eval()(x).argmax(-1)  # labels the digital network gets all right
    analog, _ = to_analog(small_net(), make_rpu_config("analognas"))
    before = {k: v.clone() for k, v in analog.state_dict().items() if torch.is_tensor(v)}
    a = drift_accuracy(analog, lambda: [(x, y)], times=[1, 86400, 2592000], trials=3, seed=5)
    after = analog.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    b = drift_accuracy(analog, lambda: [(x, y)], times=[1, 86400, 2592000], trials=3, seed=5)
    np.testing.assert_array_equal(a.acc, b.acc)
    assert a.acc.shape == (3, 3) and a.acc.std() > 0  # programming noise differs between trials
    assert a.extra["samples"] == 256 and a.to_dict()["samples"] == 256  # every sample counted once
    assert a.acc.min() < 1.0 and a.acc.mean(axis=0)[-1] < 1.0  # noise and drift cost accuracy
    ideal, _ = to_analog(small_net(), make_rpu_config("ideal"))
    np.testing.assert_allclose(drift_accuracy(ideal, lambda: [(x, y)], trials=2).acc, 1.0)


# ---------------------------------------------------------------- training through the CLI
def hwnas(*args, cwd):
    proc = subprocess.run([HWNAS, *args], cwd=cwd, env=hwnas_env(), capture_output=True, text=True, timeout=1800)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_hwa_digits_config_trains_reports_drift_and_resumes(tmp_path):
    quick = [
        "--trainer.max_epochs",
        "3",
        "--model.init_args.digital_epochs",
        "2",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks.init_args.trials",
        "2",
    ]
    code, out = hwnas("fit", "--config", str(ANALOG_CONFIG), *quick, cwd=tmp_path)
    assert code == 0, out[-3000:]
    root = tmp_path / "logs" / "analog_hwa_digits"
    assert re.search(r"Analog \(standard_hwa_torch\): \d+ tiles; layers kept digital: none", out)
    report = json.loads((root / "drift_report.json").read_text())
    assert report["hwa"]["labels"] == ["1s", "1h", "1d", "30d", "1y"] and len(report["hwa"]["acc_trials"]) == 2
    assert report["hwa"]["avm"] == pytest.approx(report["hwa"]["acc_mean"][0] - report["hwa"]["acc_mean"][3])
    assert min(report["hwa"]["acc_mean"]) > 0.8 and "digital" in report  # the digits are learnt, then drift
    assert (root / "drift_accuracy.png").stat().st_size > 1000
    assert re.search(r"drift/acc@30d=0\.\d+.*drift_digital/acc@30d=0\.\d+", out)
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 2 and "digital_state" in ckpt
    assert any("analog_module" in k for k in ckpt["state_dict"])

    code, out = hwnas(
        "fit",
        "--config",
        str(ANALOG_CONFIG),
        *quick[2:],
        "--trainer.max_epochs",
        "4",
        "--ckpt_path",
        "last",
        cwd=tmp_path,
    )
    assert code == 0, out[-3000:]
    assert "Restored all states from the checkpoint" in out
    assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 3


@pytest.mark.slow
def test_hwa_fine_tuning_from_a_digital_checkpoint_and_bad_presets(tmp_path):
    code, out = hwnas(
        "fit",
        "--config",
        str(CONFIGS / "digits_classifier.yaml"),
        "--trainer.max_epochs",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        cwd=tmp_path,
    )
    assert code == 0, out[-3000:]
    digital = tmp_path / "logs" / "digits_classifier" / "checkpoints" / "last.ckpt"
    common = ["--config", str(ANALOG_CONFIG), "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    code, out = hwnas(
        "fit",
        *common,
        "--model.init_args.digital_epochs",
        "0",
        "--model.init_args.digital_checkpoint",
        str(digital),
        "--trainer.callbacks.init_args.trials",
        "1",
        cwd=tmp_path,
    )
    assert code == 0, out[-3000:]
    report = json.loads((tmp_path / "logs" / "analog_hwa_digits" / "drift_report.json").read_text())
    assert "digital" in report  # the checkpoint's weights mapped to analog, side by side with the HWA ones

    code, out = hwnas("fit", *common, "--model.init_args.preset", "pcm_dream", cwd=tmp_path)
    assert code == 2 and "hwnas: error: Unknown analog preset 'pcm_dream'; expected one of" in out
    code, out = hwnas("fit", *common, "--model.init_args.digital_checkpoint", "missing.ckpt", cwd=tmp_path)
    assert code == 2 and "digital_checkpoint 'missing.ckpt' does not exist" in out
    code, out = hwnas("fit", *common, "--trainer.callbacks.init_args.times", "[1h, 0]", cwd=tmp_path)
    assert code == 2 and "Drift times must be positive" in out


@pytest.mark.ddp
@pytest.mark.slow
def test_hwa_training_and_drift_evaluation_with_two_cpu_processes(tmp_path):
    """HWA training under DDP keeps every tile identical on both ranks; drift evaluation shards the val set."""
    out_dir = tmp_path / "ranks"
    code, out = hwnas(
        "fit", "--config", str(ANALOG_CONFIG), "--trainer", str(CONFIGS / "trainer" / "ddp.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.max_epochs", "2",
        "--model.init_args.digital_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks.init_args.trials", "2",
        "--trainer.callbacks+=rank_metrics.DumpRankMetrics", f"--trainer.callbacks.out_dir={out_dir}",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, out[-3000:]
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    sums = [r["parameter_sums"] for r in ranks]
    assert any(k.endswith("input_range") for k in sums[0])  # data-initialised per rank, then averaged
    for name, value in sums[0].items():
        assert value == pytest.approx(sums[1][name], rel=1e-6, abs=1e-6), name
    for key in ("drift/acc@1s", "drift/acc@30d", "drift/avm", "drift_digital/acc@1d"):
        assert ranks[0]["metrics"][key] == ranks[1]["metrics"][key], key
    report = json.loads((tmp_path / "logs" / "analog_hwa_digits" / "drift_report.json").read_text())
    dm = DigitsDataModule(batch_size=64, seed=42)
    dm.setup("fit")
    # every validation image counted exactly once across the two shards, for HWA and for the digital reference
    assert report["hwa"]["samples"] == report["digital"]["samples"] == len(dm.data_val)
    assert min(report["hwa"]["acc_mean"]) > 0.5


def test_the_drift_plot_names_its_times_networks_and_setting(tmp_path):
    from hwnas_pl.callbacks.drift_evaluation import plot_drift

    times = [parse_time(t) for t in ("1s", "1h", "1d", "30d", "1y")]
    acc = np.linspace(0.9, 0.8, 5)[None].repeat(3, 0)
    results = {"hwa": DriftResult(times, acc), "digital": DriftResult(times, acc - 0.1)}
    fig = plot_drift(results, tmp_path / "d.png", preset="analognas", trials=3)
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [time_label(t) for t in times] == ["1s", "1h", "1d", "30d", "1y"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["HWA-trained", "digitally trained, mapped to analog"]
    assert ax.get_title() == "PCM drift: preset analognas, 3 programmings per time"
    assert (tmp_path / "d.png").stat().st_size > 5000


@pytest.mark.slow
def test_fashion_mnist_hwa_config_reports_the_drift_gap_with_intervals(tmp_path):
    from datasets import write_mnist

    data = write_mnist(tmp_path / "fmnist", n_train=160, n_test=20)
    code, out = hwnas(
        "fit", "--config", str(CONFIGS / "analog_hwa_fashionmnist.yaml"), "--data.init_args.data_dir", str(data),
        "--data.init_args.val_size", "40", "--data.init_args.train_size", "null", "--data.init_args.batch_size", "40",
        "--trainer.max_epochs", "2", "--model.init_args.digital_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks.init_args.trials", "3", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, out[-3000:]
    assert re.search(r"Analog \(analognas\): \d+ tiles", out)
    report = json.loads((tmp_path / "logs" / "analog_hwa_fashionmnist" / "drift_report.json").read_text())
    assert report["epoch"] == 1 and report["preset"] == "analognas" and report["hwa"]["device"] == "cpu"
    assert report["hwa"]["samples"] == report["digital"]["samples"] == 40
    diff = report["avm_difference_digital_minus_hwa"]
    assert diff["ci95"][0] <= diff["mean"] <= diff["ci95"][1]
    assert diff["mean"] == pytest.approx(report["digital"]["avm"] - report["hwa"]["avm"])
    assert report["digital"]["input_ranges_calibrated_on"] == "train"
