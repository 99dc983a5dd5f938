"""The floating-point phase, input-range calibration, inference mapping, and where the drift report runs."""

import lightning as L
import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from hwnas_pl.analog import DriftResult, make_rpu_config, set_tile_config, to_analog, training_free_config
from hwnas_pl.analog.drift import DAY, MONTH, SECOND, difference_ci
from hwnas_pl.analog.inference import (
    BYPASS_RANGE,
    bypass_input_ranges,
    calibrate_input_ranges,
    map_for_inference,
    ranged_tiles,
    restart_input_ranges,
)
from hwnas_pl.callbacks import DriftEvaluation
from hwnas_pl.callbacks.drift_evaluation import compare_avm
from hwnas_pl.datamodules import DigitsDataModule
from hwnas_pl.modules import AnalogModule


def bn_linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(12), nn.Linear(12, 3))


def test_the_floating_point_phase_clips_nothing_and_computes_the_digital_layers():
    net = bn_linear().eval()
    cfg = make_rpu_config("standard_hwa_torch")
    analog, _ = to_analog(net, cfg)
    set_tile_config(analog, training_free_config(cfg))
    analog.eval()
    x = 40 * torch.randn(16, 12)  # far beyond the preset's initial input range of 3
    assert (analog(x) - net(x)).abs().max() > 1.0  # with the preset's range the inputs are clipped
    bypass_input_ranges(analog)
    torch.testing.assert_close(analog(x), net(x))
    tile = ranged_tiles(analog)[0]
    analog.train()
    analog(x).square().sum().backward()  # a training step neither initialises the range from data nor pulls it
    assert float(tile.input_range.detach()) == BYPASS_RANGE and abs(float(tile.input_range.grad)) < 1e-6
    restart_input_ranges(analog)
    assert float(tile.input_range.detach()) == 3.0 and int(tile.input_range_update_idx) == 0


def test_input_range_calibration_is_aihwkits_statistic_in_eval_mode():
    net = bn_linear()
    with torch.no_grad():
        net[1].running_mean.fill_(0.5)
        net[1].running_var.fill_(4.0)
    analog, _ = to_analog(net, make_rpu_config("standard_hwa_torch"))
    torch.manual_seed(1)
    batches = [(torch.randn(32, 12) * s, None) for s in (1.0, 2.0, 3.0)]
    used = calibrate_input_ranges(analog, batches, num_batches=2)
    # the tile sees BN(x) with the running statistics: (x - 0.5) / sqrt(4 + eps)
    seen = [((x - 0.5) / np.sqrt(4.0 + 1e-5)).double().std().item() for x, _ in batches[:2]]
    tile = ranged_tiles(analog)[0]
    assert used == 2
    assert float(tile.input_range.detach()) == pytest.approx(3.0 * np.mean(seen), rel=1e-5)  # init_std_alpha = 3
    assert float(analog[1].running_mean[0]) == 0.5 and float(analog[1].running_var[0]) == 4.0
    assert int(tile.input_range_update_idx) == 100  # marked initialised: training does not redo it


def test_map_for_inference_remaps_the_weights_without_changing_the_function():
    net = bn_linear().eval()
    cfg = make_rpu_config("standard_hwa_torch")
    analog, _ = to_analog(net, cfg)
    tile = next(analog.analog_tiles())
    with torch.no_grad():
        tile.tile.weight.mul_(4.0)  # trained weights beyond the conductance range, as floating point leaves them
        tile.out_scaling_alpha.div_(4.0)
    x = torch.randn(64, 12)
    set_tile_config(analog, training_free_config(cfg))  # compare the functions on perfect MVMs
    bypass_input_ranges(analog)
    before = analog.eval()(x)
    map_for_inference(analog, make_rpu_config("ideal"), [(x, None)], num_batches=1)
    assert tile.tile.weight.abs().max().item() == pytest.approx(1.0, rel=1e-6)
    bypass_input_ranges(analog)
    torch.testing.assert_close(analog(x), before)


def test_learned_periphery_is_excluded_from_weight_decay():
    sgd = lambda params: torch.optim.SGD(params, lr=0.1, weight_decay=5e-4)  # noqa: E731
    module = AnalogModule("small_cnn", 10, (1, 8, 8), preset="standard_hwa_torch", optimizer=sgd)
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    names = {id(p): n for n, p in module.named_parameters()}
    groups = [{names[id(p)] for p in g["params"] if id(p) in names} for g in opt.param_groups]
    free = [g for g, pg in zip(groups, opt.param_groups) if pg["weight_decay"] == 0.0 and g]
    assert len(free) == 1 and free[0] and all(n.endswith(("input_range", "out_scaling_alpha")) for n in free[0])
    assert any(n.endswith("input_range") for n in free[0]) and any(n.endswith("out_scaling_alpha") for n in free[0])
    assert all(not n.endswith("input_range") for g in groups if g is not free[0] for n in g)


def test_difference_intervals_match_students_and_welchs():
    a, b = np.array([0.10, 0.20, 0.30]), np.array([0.02, 0.05, 0.01, 0.04])
    one = difference_ci(a)
    half = stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    assert one["mean"] == pytest.approx(0.2) and one["ci95"] == pytest.approx([0.2 - half, 0.2 + half])
    two = difference_ci(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert two["mean"] == pytest.approx(a.mean() - b.mean()) and two["ci95"] == pytest.approx([ci.low, ci.high])
    assert difference_ci(a[:1]) is None and difference_ci(a, b[:1]) is None


def test_the_avm_ratio_is_reported_only_when_both_drops_are_real():
    times = [SECOND, DAY, MONTH]
    digital = DriftResult(times, np.array([[0.9, 0.8, 0.7], [0.91, 0.82, 0.69], [0.9, 0.79, 0.72]]))
    hwa = DriftResult(times, np.array([[0.9, 0.89, 0.85], [0.9, 0.88, 0.86], [0.91, 0.9, 0.85]]))
    out = compare_avm(hwa, digital)
    assert out["avm_ratio_digital_over_hwa"] == pytest.approx(digital.avm() / hwa.avm())
    assert out["avm_difference_digital_minus_hwa"]["mean"] == pytest.approx(digital.avm() - hwa.avm())
    flat = DriftResult(times, np.array([[0.9, 0.9, 0.91], [0.9, 0.9, 0.89], [0.9, 0.9, 0.9]]))  # AVM 0 ± noise
    out = compare_avm(flat, digital)
    assert out["avm_ratio_digital_over_hwa"] is None and "not significantly" in out["avm_ratio_note"]
    assert out["avm_difference_digital_minus_hwa"]["ci95"][0] > 0


def test_the_drift_report_runs_before_teardown_on_the_root_device(tmp_path, monkeypatch):
    import hwnas_pl.callbacks.drift_evaluation as de

    events = []
    real = de.drift_accuracy

    def spy(model, *args, **kwargs):
        events.append(("drift", next(model.parameters()).device))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(de, "drift_accuracy", spy)
    module = AnalogModule("small_cnn", 10, (1, 8, 8), preset="analognas", digital_epochs=1)
    trainer = L.Trainer(
        max_epochs=2, limit_train_batches=3, limit_val_batches=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
        callbacks=[DriftEvaluation(times=["1s", "1d", "30d"], trials=2, output_dir=str(tmp_path))],
    )  # fmt: skip
    teardown = trainer.strategy.teardown
    monkeypatch.setattr(trainer.strategy, "teardown", lambda: (events.append(("teardown", None)), teardown())[1])
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=32, seed=0))
    assert [e[0] for e in events] == ["drift", "drift", "teardown"]  # HWA and digital reference, then teardown
    assert all(device == trainer.strategy.root_device for _, device in events[:2])
    report = de.json.loads((tmp_path / "drift_report.json").read_text())
    assert report["epoch"] == 1  # the last epoch run (epochs 0 and 1)
    assert report["hwa"]["device"] == str(trainer.strategy.root_device)
    assert report["digital"]["input_ranges_calibrated_on"] == "train"
    assert "avm_difference_digital_minus_hwa" in report
