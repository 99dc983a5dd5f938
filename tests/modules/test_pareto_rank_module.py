"""HW-PR-NAS end to end: the Pareto-score module trains, resumes exactly, transfers its encoder to a new device head
(frozen), and its checkpoint drives `hwnas search` through the `pareto_score` cost model, verified by the table."""

import json
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
from conftest import CONFIGS

from hwnas_pl.cli import cli_main
from hwnas_pl.datamodules import ArchitectureDataModule
from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.evaluators.nasbench201 import NASBench201TableModel
from hwnas_pl.modules import ParetoRankModule
from hwnas_pl.spaces import NASBench201Space
from hwnas_pl.surrogates.pareto_score import ParetoScoreModel

SPACE = NASBench201Space()
DEVICE = {"flops": {"baseline_acc": "max", "flops": "min"}}


def _data(devices=DEVICE, n_train=72, n_val=24):
    return ArchitectureDataModule(SPACE, devices, [NASBench201TableModel(SPACE), AnalyticCostModel(SPACE)],
                                  n_train=n_train, n_val=n_val, seed=0)  # fmt: skip


def _trainer(tmp_path, epochs, **kw):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0, **kw)  # fmt: skip


def test_training_learns_pareto_ranks_and_resumes_exactly(tmp_path):
    L.seed_everything(0)
    learner = ParetoRankModule(optimizer=partial(torch.optim.Adam, lr=3e-3))
    trainer = _trainer(tmp_path / "l", 10, enable_checkpointing=False)
    trainer.fit(learner, datamodule=_data(n_train=180, n_val=60))
    # 60 held-out cells ranked against their true fronts (0.42 measured; chance is 0 with a deviation of 0.09)
    assert float(trainer.callback_metrics["val/tau"]) > 0.25
    L.seed_everything(0)
    straight = ParetoRankModule()
    _trainer(tmp_path / "a", 6, enable_checkpointing=False).fit(straight, datamodule=_data())
    L.seed_everything(0)
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", filename="last", save_on_train_epoch_end=True)
    _trainer(tmp_path / "b", 3, callbacks=[ckpt]).fit(ParetoRankModule(), datamodule=_data())
    resumed = ParetoRankModule()
    _trainer(tmp_path / "c", 6, enable_checkpointing=False).fit(resumed, datamodule=_data(),
                                                                 ckpt_path=tmp_path / "ck" / "last.ckpt")  # fmt: skip
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_new_device_head_trains_on_a_frozen_encoder(tmp_path):
    L.seed_everything(0)
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="base")
    base = ParetoRankModule()
    _trainer(tmp_path / "a", 2, callbacks=[ckpt]).fit(base, datamodule=_data())
    devices = {**DEVICE, "params": {"baseline_acc": "max", "params": "min"}}
    tuned = ParetoRankModule(init_from=str(tmp_path / "base.ckpt"), freeze_encoder=True)
    _trainer(tmp_path / "b", 2, enable_checkpointing=False).fit(tuned, datamodule=_data(devices))
    for name, value in base.net.encoder.state_dict().items():
        assert torch.equal(value, tuned.net.encoder.state_dict()[name]), name  # loaded, then frozen
    assert "val/tau_params" in _trainer(tmp_path / "c", 1).validate(tuned, datamodule=_data(devices))[0]
    with pytest.raises(Exception, match="encodes architectures differently"):
        other = ParetoRankModule(init_from=str(tmp_path / "base.ckpt"))
        _trainer(tmp_path / "d", 1).fit(other, datamodule=_data(n_train=40))


def test_pareto_score_model_reads_the_checkpoint(tmp_path):
    L.seed_everything(0)
    module = ParetoRankModule()
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="s")
    _trainer(tmp_path, 1, callbacks=[ckpt]).fit(module, datamodule=_data())
    model = ParetoScoreModel(SPACE, tmp_path / "s.ckpt")
    archs = SPACE.sample(5, np.random.default_rng(3))
    scores = model.evaluate(archs)["pareto_score"]
    from hwnas_pl.nn.architecture_encoders import encode_architectures

    views, _ = encode_architectures(SPACE, archs, (3, 32, 32), 10, module.stats)
    module.eval()
    with torch.no_grad():
        assert np.allclose(scores, module.net.score(views).numpy(), atol=1e-6) and ((scores > 0) & (scores < 1)).all()


@pytest.mark.slow
def test_cli_fit_then_search_with_the_surrogate(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli_main([
        "fit", "--config", str(CONFIGS / "hwprnas_nb201.yaml"), "--trainer.max_epochs", "2",
        "--data.init_args.n_train", "60", "--data.init_args.n_val", "20", "--trainer.logger", "false",
    ])  # fmt: skip
    assert (tmp_path / "outputs" / "hwprnas" / "pareto_score.ckpt").is_file()
    cli_main([
        "search", "--config", str(CONFIGS / "search" / "hwprnas_nb201.yaml"),
        "--strategy.init_args.population_size", "20", "--strategy.init_args.generations", "2", "--verify_top", "8",
        "--wandb", "null", "--progress", "false",
    ])  # fmt: skip
    out = capsys.readouterr().out
    verified = json.loads((tmp_path / "outputs" / "hwprnas_nb201" / "verified.json").read_text())
    table = NASBench201TableModel(SPACE, metrics=["baseline_acc"])
    assert len(verified) == 8 and "  verified pick: " in out
    assert all(row["baseline_acc"] == table.evaluate([row["arch"]])["baseline_acc"][0] for row in verified)
    assert any(row["on_true_front"] for row in verified)


def test_objectives_can_come_from_a_csv(tmp_path):
    archs = SPACE.sample(30, np.random.default_rng(0))
    values = AnalyticCostModel(SPACE).evaluate(archs)
    lines = [f"{SPACE.to_string(a)},{p},{f}" for a, p, f in zip(archs, values["params"], values["flops"])]
    (tmp_path / "t.csv").write_text("arch,params,flops\n" + "\n".join(lines))
    dm = ArchitectureDataModule(SPACE, {"d": {"params": "min", "flops": "min"}}, table=tmp_path / "t.csv",
                                n_train=20, n_val=5)  # fmt: skip
    dm.setup("fit")
    assert len(set(dm.archs)) == 25 and set(dm.archs) <= set(archs)
    for k in (0, 24):
        i = archs.index(dm.archs[k])
        row = dm.data_train[k][1] if k < 20 else dm.data_val[k - 20][1]
        assert row.tolist() == pytest.approx([values["params"][i], values["flops"][i]])
    with pytest.raises(Exception, match="needs evaluators, a table, or both"):
        ArchitectureDataModule(SPACE, {"d": {"params": "min"}})
    with pytest.raises(Exception, match="has no column 'energy'"):
        ArchitectureDataModule(SPACE, {"d": {"energy": "min"}}, table=tmp_path / "t.csv", n_train=20).setup("fit")


@pytest.mark.slow
def test_fbnet_config_trains_on_accuracies_from_a_csv_and_hw_nas_bench_latencies(tmp_path, monkeypatch):
    """configs/hwprnas_fbnet.yaml as a user runs it: the CSV's rows are the sample, HW-NAS-Bench prices them."""
    from datasets import write_fbnet_inputs

    from hwnas_pl.evaluators.hw_nas_bench import HWNASBenchModel
    from hwnas_pl.spaces import FBNetSpace

    csv, pickle = write_fbnet_inputs(tmp_path / "user")
    monkeypatch.setenv("FBNET_ACCURACY_CSV", str(csv))
    monkeypatch.setenv("HW_NAS_BENCH_PICKLE", str(pickle))
    monkeypatch.chdir(tmp_path)
    cli_main([
        "fit", "--config", str(CONFIGS / "hwprnas_fbnet.yaml"), "--trainer.max_epochs", "2",
        "--data.init_args.n_train", "30", "--data.init_args.n_val", "10", "--trainer.logger", "false",
    ])  # fmt: skip
    space = FBNetSpace("cifar")
    model = ParetoScoreModel(space, tmp_path / "outputs" / "hwprnas_fbnet" / "pareto_score.ckpt", device="pixel3")
    assert model.devices == ["pixel3", "edgegpu"]
    assert np.isfinite(model.evaluate(space.sample(3, np.random.default_rng(5)))["pareto_score"]).all()
    dm = ArchitectureDataModule(space, {"pixel3": {"accuracy": "max", "pixel3_latency": "min"}},
                                [HWNASBenchModel(space, pickle, "cifar100", ["pixel3_latency"])], table=csv,
                                n_train=30, n_val=10)  # fmt: skip
    dm.setup("fit")
    rows = dict(line.split(",") for line in csv.read_text().splitlines()[1:])
    arch, (accuracy, latency) = dm.archs[0], dm.data_train[0][1].tolist()
    assert accuracy == pytest.approx(float(rows[space.to_string(arch)]))
    assert latency == pytest.approx(HWNASBenchModel(space, pickle, "cifar100").evaluate([arch])["pixel3_latency"][0])
