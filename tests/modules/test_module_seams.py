"""LightningModule seams: tasks, loss terms (from a config), model transforms (analog), task-generic supernets."""

import functools
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from conftest import DIGITS_CONFIG, hwnas_env
from sklearn.datasets import load_digits

from hwnas_pl.analog import AnalogTransform
from hwnas_pl.callbacks import DriftEvaluation, ParetoRankAlphaUpdate
from hwnas_pl.datamodules import DigitsDataModule
from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.modules import AnalogModule, ClassifierModule, SupernetModule
from hwnas_pl.modules.tasks import ClassificationTask, RegressionTask, SegmentationTask
from hwnas_pl.nn import ActivationPenalty
from hwnas_pl.spaces import NASBench201Space

HWNAS = str(Path(sys.executable).parent / "hwnas")


def _trainer(tmp_path, **kwargs):
    defaults = dict(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    return L.Trainer(**{**defaults, **kwargs})


def test_loss_term_value_and_total_loss_by_hand():
    torch.manual_seed(0)
    term = ActivationPenalty(["net.2"], p=1, weight=0.5)  # the MLP's ReLU output
    module = ClassifierModule("mlp", num_classes=10, input_shape=(1, 8, 8), loss_terms=[term])
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    module.train()
    total = module.training_step((x, y), 0)
    with torch.no_grad():
        hidden = torch.relu(module.net.net[1](x.flatten(1)))
        r = hidden.abs().mean()
        ce = torch.nn.functional.cross_entropy(module.net(x), y)
    assert float(term.features["net.2"].abs().mean()) == pytest.approx(float(r), rel=1e-6)
    assert float(total) == pytest.approx(float(ce + 0.5 * r), rel=1e-6)
    total.backward()  # the term's gradient reaches the first layer
    assert module.net.net[1].weight.grad is not None


def test_loss_term_errors_are_one_sentence():
    with pytest.raises(ConfigError, match="names layer 'net.9', which the network does not have"):
        ClassifierModule("mlp", num_classes=10, input_shape=(1, 8, 8), loss_terms=[ActivationPenalty(["net.9"])])
    terms = [ActivationPenalty(["net.2"]), ActivationPenalty(["net.1"])]
    with pytest.raises(ConfigError, match="already has a loss term named 'activation_penalty'"):
        ClassifierModule("mlp", num_classes=10, input_shape=(1, 8, 8), loss_terms=terms)


@pytest.mark.slow
def test_a_loss_term_added_from_a_config_is_trained_and_logged(tmp_path):
    config = yaml.safe_load(DIGITS_CONFIG.read_text())
    config["model"]["init_args"]["loss_terms"] = [
        {"class_path": "hwnas_pl.nn.ActivationPenalty", "init_args": {"layers": ["features.2"], "weight": 0.01}}
    ]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [HWNAS, "fit", "--config", str(tmp_path / "c.yaml"), "--trainer.max_epochs", "1", "--trainer.logger",
         "false", "--trainer.default_root_dir", str(tmp_path / "run")],
        cwd=tmp_path, env=hwnas_env(), capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = dict(kv.split("=") for kv in proc.stdout.split("metrics: ")[1].split("\n")[0].split(", "))
    assert float(metrics["train/activation_penalty"]) > 0
    assert float(metrics["train/total_loss"]) > float(metrics["train/loss"])
    assert float(metrics["val/acc"]) > 0.5


def test_tasks_score_what_they_say():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    cls = ClassificationTask(2, (1, 1, 1))
    assert cls.score(cls.score_state(logits, torch.tensor([0, 0, 0]))) == pytest.approx(2 / 3)
    seg = SegmentationTask(2, (1, 2, 2))
    out = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]]])  # predicts [[0, 1], [1, 1]]
    target = torch.tensor([[[0, 1], [0, 255]]])
    # class 0: tp 1, fn 1 -> IoU 1/2; class 1: tp 1, fp 1 -> IoU 1/2 (the ignored pixel counts nowhere)
    assert seg.score(seg.score_state(out, target)) == pytest.approx(0.5)
    reg = RegressionTask(1, (1,), target_offset=10.0, target_scale=2.0)
    raw = torch.tensor([[0.0], [1.0]])  # 10 and 12 in the targets' unit
    assert reg.score(reg.score_state(raw, torch.tensor([[11.0], [11.0]]))) == pytest.approx(-1.0)


def test_analog_module_is_the_classifier_plus_the_analog_transform(tmp_path):
    """Same seed, same data: AnalogModule and ClassifierModule(transforms=[AnalogTransform]) train the same."""
    weights = []
    for make in (
        lambda: AnalogModule("mlp", 10, (1, 8, 8), preset="standard_hwa_torch", digital_epochs=1,
                             optimizer=functools.partial(torch.optim.SGD, lr=0.05)),
        lambda: ClassifierModule("mlp", 10, (1, 8, 8), optimizer=functools.partial(torch.optim.SGD, lr=0.05),
                                 transforms=[AnalogTransform("standard_hwa_torch", digital_epochs=1)]),
    ):  # fmt: skip
        L.seed_everything(3)
        module = make()
        trainer = _trainer(tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=1)
        trainer.fit(module, DigitsDataModule(batch_size=64))
        weights.append({k: v.clone() for k, v in module.net.state_dict().items() if torch.is_tensor(v)})
        assert module.transform(AnalogTransform).phase == "hwa" and module.net.analog_tile_count() == 2
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_drift_evaluation_works_on_any_module_with_the_analog_transform(tmp_path):
    module = ClassifierModule("mlp", 10, (1, 8, 8), transforms=[AnalogTransform("analognas", digital_epochs=1)])
    drift = DriftEvaluation(times=["1s", "1d"], trials=2, output_dir=str(tmp_path))
    trainer = _trainer(tmp_path, max_epochs=2, limit_train_batches=2, callbacks=[drift])
    trainer.fit(module, DigitsDataModule(batch_size=64))
    report = drift.reports[-1]
    assert set(report) >= {"hwa", "digital"} and report["preset"] == "analognas"
    with pytest.raises(ConfigError, match="DriftEvaluation needs an analog network"):
        _trainer(tmp_path, max_epochs=1, callbacks=[drift]).fit(ClassifierModule("mlp", 10, (1, 8, 8)),
                                                                  DigitsDataModule(batch_size=64))  # fmt: skip


class _DigitValues(torch.utils.data.Dataset):
    """The 8x8 digits as MONAI-style dict items whose target is the digit's value (a regression)."""

    def __init__(self, part):
        digits = load_digits()
        x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
        y = torch.tensor(digits.target, dtype=torch.float32)[:, None]
        self.x, self.y = (x[:1500], y[:1500]) if part == "train" else (x[1500:], y[1500:])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i]}


def test_supernet_trains_a_regression_task_on_dict_batches_and_ranks_by_its_score(tmp_path):
    space = NASBench201Space(channels=4, cells=1)
    module = SupernetModule(space, num_classes=1, input_shape=(1, 8, 8), warmup_epochs=1, cost_model=AnalyticCostModel,
                            task=functools.partial(RegressionTask, target_offset=4.5, target_scale=3.0),
                            optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))  # fmt: skip
    train = torch.utils.data.DataLoader(_DigitValues("train"), batch_size=64, shuffle=True)
    val = torch.utils.data.DataLoader(_DigitValues("val"), batch_size=100)
    update = ParetoRankAlphaUpdate(n=8, top_n=3, num_batches=2)
    trainer = _trainer(tmp_path, max_epochs=2, limit_train_batches=6, callbacks=[update])
    trainer.fit(module, train, val)
    assert update.updates == 2 and {"val/aae", "train/loss"} <= set(trainer.callback_metrics)
    paths = module.sample_subnets(4, np.random.default_rng(0))
    scores = module.estimate_accuracy(paths, module.heldout_batches(2))
    # the score is -AAE over the two held-out batches, computed here by hand for the first path
    with torch.no_grad(), __import__("hwnas_pl.spaces.supernet", fromlist=["x"]).batch_statistics(module.supernet):
        errors = [(module.task.to_unit(module.supernet(x, module.ops_of(paths[0]))) - y).abs() for x, y in
                  module.heldout_batches(2)]  # fmt: skip
    assert scores[0] == pytest.approx(-float(torch.cat(errors).mean()), rel=1e-6) and (scores < 0).all()
