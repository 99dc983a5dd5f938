"""HW-EvRSNAS end to end through ``hwnas search``: the shipped config on tiny Fashion-MNIST IDX files (RMI proxy,
LUT latency budget, GA, the pick verified with a table's protocol), and a reference trained first by its config."""

import json

import pytest
import torch
import yaml
from conftest import CONFIGS, DIGITS_CONFIG

from hwnas_pl.cli import cli_main
from hwnas_pl.evaluators.table_protocol import protocol_id
from hwnas_pl.nn.backbones import CifarResNet

PROTOCOL = {"resize": 16, "channels": 4, "cells_per_stage": 2, "train_size": 40, "epochs": 1, "lr": 0.1,
            "batch_size": 8, "seeds": [0], "val_size": 10}  # fmt: skip


@pytest.mark.slow
def test_cli_hwevrsnas_search_prints_the_pick_and_its_verified_accuracy(tmp_path, capsys):
    from datasets import write_mnist

    data = write_mnist(tmp_path / "fmnist", n_train=60, n_test=20)
    torch.save(CifarResNet(10, (1, 16, 16), depth=8, width=4), tmp_path / "ref.pt")
    table = tmp_path / "table.csv"
    table.write_text(f"arch,test_acc,val_acc,protocol\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10,10,"
                     f"{protocol_id(PROTOCOL)}\n")  # fmt: skip
    table.with_suffix(".json").write_text(json.dumps({**PROTOCOL, "data_dir": str(data)}))
    cfg = yaml.safe_load((CONFIGS / "search" / "hwevrsnas_nb201_fashionmnist.yaml").read_text())
    rmi, lut = cfg["evaluators"]
    rmi["init_args"]["datamodule"]["init_args"].update(data_dir=str(data), train_size=None, val_size=10)
    rmi["init_args"].update(reference=str(tmp_path / "ref.pt"), reference_config=None, n_train=2, batch_size=8,
                            pool_size=16)  # fmt: skip
    lut["init_args"].update(path=str(tmp_path / "lut.json"), warmup=0, repeats=2)
    cfg["strategy"]["init_args"].update(population_size=4, generations=2, tournament_size=2)
    cfg["verify"]["init_args"]["table"] = str(table)
    cfg.update(max_evaluations=20, output_dir=str(tmp_path / "out"), wandb=None, progress=False)
    cfg["constraints"] = {"latency_ms": {"<=": 1e3}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    cli_main(["search", "--config", str(tmp_path / "s.yaml")])
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    pick = summary["strategy"]["pick"]
    assert f"  pick: {pick['arch']}" in out and f"  verified pick: {pick['arch']} (test_acc" in out
    assert summary["verified"][0]["role"] == "pick" and 0 <= summary["verified"][0]["test_acc"] <= 100
    assert summary["strategy"]["generations"] == 2 and 0.0 <= pick["fitness"] <= 3.0


@pytest.mark.slow
def test_a_missing_reference_is_trained_first_by_its_config(tmp_path):
    from hwnas_pl.datamodules import DigitsDataModule
    from hwnas_pl.evaluators.proxies import RMIProxyModel
    from hwnas_pl.spaces import NASBench201Space

    cfg = yaml.safe_load(DIGITS_CONFIG.read_text())
    cfg["trainer"].update(max_epochs=1, logger=False, default_root_dir=str(tmp_path / "logs"))
    cfg["trainer"]["callbacks"] = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                    "init_args": {"dirpath": str(tmp_path), "filename": "ref"}}]  # fmt: skip
    cfg["model"]["init_args"]["backbone"] = {"class_path": "hwnas_pl.nn.backbones.CifarResNet",
                                             "init_args": {"depth": 8, "width": 4}}  # fmt: skip
    cfg["model"]["init_args"].pop("scheduler")
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump(cfg))
    model = RMIProxyModel(NASBench201Space(4, 1), DigitsDataModule(), tmp_path / "ref.ckpt", 10, (1, 8, 8),
                          reference_config=tmp_path / "ref.yaml", n_train=2, batch_size=8, pool_size=16)  # fmt: skip
    assert (tmp_path / "ref.ckpt").is_file() and isinstance(model.reference, CifarResNet)
    assert 0.0 <= model.evaluate(["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                                  "nor_conv_3x3~2|"])["rmi"][0] <= 3.0  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hwevrsnas_nb201_cifar10.yaml", "hwevrsnas_mbconv_cifar10.yaml"])
def test_cifar10_configs_run_on_the_cifar_fixture(name, tmp_path, capsys):
    from datasets import write_cifar10

    write_cifar10(tmp_path / "cifar", per_batch=12)
    torch.save(CifarResNet(10, (3, 32, 32), depth=8, width=4), tmp_path / "ref.pt")
    cfg = yaml.safe_load((CONFIGS / "search" / name).read_text())
    rmi, cost = cfg["evaluators"]
    rmi["init_args"]["datamodule"]["init_args"].update(data_dir=str(tmp_path / "cifar"), val_size=10)
    rmi["init_args"].update(reference=str(tmp_path / "ref.pt"), reference_config=None, n_train=1, batch_size=4,
                            pool_size=8)  # fmt: skip
    if "path" in cost["init_args"]:
        cost["init_args"].update(path=str(tmp_path / "lut.json"), warmup=0, repeats=1)
    cfg["strategy"]["init_args"].update(population_size=3, generations=1, tournament_size=2)
    cfg.update(max_evaluations=10, output_dir=str(tmp_path / "out"), wandb=None, progress=False)
    cfg["constraints"] = {m: {"<=": 1e12} for m in cfg["constraints"]}
    if name.startswith("hwevrsnas_mbconv"):
        cfg["space"]["init_args"] = {"skeleton": "cifar"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    cli_main(["search", "--config", str(tmp_path / "s.yaml")])
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "  pick: " in out and summary["strategy"]["generations"] == 1
    if "verify" in cfg:
        assert 0.0 < summary["verified"][0]["baseline_acc"] < 100.0  # NAS-Bench-201's CIFAR-10 accuracy of the pick
