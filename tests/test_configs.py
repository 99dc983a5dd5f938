"""Every YAML under configs/ parses and instantiates (``run=False``), as the lightning-hydra-template does."""

from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONFIGS, DIGITS_CONFIG
from datasets import (
    write_apolloscape,
    write_cifar10,
    write_cifar100,
    write_fbnet_inputs,
    write_image_folders,
    write_imagenet16,
    write_mnist,
    write_msd_task,
    write_troika,
)

from hwnas_pl.cli import HWNASCLI

EXPERIMENTS = sorted(CONFIGS.glob("*.yaml"))
#: How a group file is put on top of a complete experiment.
GROUP_FLAG = {
    "trainer": "--trainer",
    "model": "--model",
    "data": "--data",
    "logger": "--trainer.logger",
    "callbacks": "--trainer.callbacks",
}
GROUP_FILES = sorted(p for group in GROUP_FLAG for p in (CONFIGS / group).glob("*.yaml"))


def data_dir_args(path, tmp_path) -> list[str]:
    """``--data.init_args.data_dir`` pointing at a tiny copy, in its real format, of the dataset ``path`` names."""
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):  # a callbacks group is a list: no data
        return []
    init = (config.get("data", config) or {}).get("init_args", {})
    name = (config.get("data", config) or {}).get("class_path", "").rsplit(".", 1)[-1]
    root = tmp_path / "data"
    writers = {
        "CIFARDataModule": lambda: write_cifar100(root) if init.get("dataset") == "cifar100" else write_cifar10(root),
        "ImageNet16DataModule": lambda: write_imagenet16(root),
        "ImageNetDataModule": lambda: write_image_folders(root, [f"n{i:02d}" for i in range(100)], 1, 1),
        "ApolloScapeDataModule": lambda: write_apolloscape(root, {"R1": 1}, scene=init.get("task") == "scene"),
        "MSDDataModule": lambda: write_msd_task(tmp_path, name="data"),
        "FashionMNISTDataModule": lambda: write_mnist(root),
        "MNISTDataModule": lambda: write_mnist(root),
        "TROIKADataModule": lambda: write_troika(
            root, {"DATA_01_TYPE01": 70, "DATA_11_TYPE02": 80, "DATA_12_TYPE02": 90}
        ),
    }
    if name not in writers:
        return []
    writers[name]()
    return ["--data.init_args.data_dir", str(root)]


def write_loaded_weights(path, args) -> None:
    """The file a config's ``LoadWeights`` transform reads: the weights of its own network, built without it."""
    config = yaml.safe_load(path.read_text())
    transforms = config.get("model", {}).get("init_args", {}).get("transforms") or []
    for t in transforms:
        if t["class_path"].endswith("LoadWeights"):
            cli = HWNASCLI(args=[*args, "--model.init_args.transforms", "[]"], run=False)
            target = Path(t["init_args"]["path"])  # relative to the test's own directory
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"state_dict": cli.model.state_dict()}, target)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_config_instantiates(path, tmp_path, monkeypatch):
    if "HW_NAS_BENCH_PICKLE" in path.read_text():  # the user's files, written by the fixture in their formats
        csv, pickle = write_fbnet_inputs(tmp_path / "fbnet")
        monkeypatch.setenv("FBNET_ACCURACY_CSV", str(csv))
        monkeypatch.setenv("HW_NAS_BENCH_PICKLE", str(pickle))
    args = ["--config", str(path), "--trainer.accelerator", "cpu", *data_dir_args(path, tmp_path)]
    write_loaded_weights(path, args)
    cli = HWNASCLI(args=args, run=False)
    assert cli.model is not None and cli.datamodule is not None and cli.trainer is not None


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_group_config_composes_with_an_experiment(path, tmp_path):
    flag = GROUP_FLAG[path.parent.name]
    base = DIGITS_CONFIG
    if path.parent.name == "data":  # on the experiment of the same task (a 3-D or regression dataset needs its model)
        wanted = yaml.safe_load(path.read_text())["class_path"]
        base = next((e for e in EXPERIMENTS if yaml.safe_load(e.read_text())["data"]["class_path"] == wanted), base)
    args = ["--config", str(base), flag, str(path), "--trainer.accelerator", "cpu"]
    cli = HWNASCLI(args=[*args, *data_dir_args(path, tmp_path)], run=False)
    assert cli.trainer is not None
    if path.parent.name == "logger":
        assert type(cli.trainer.logger).__name__ in path.read_text()
    if path.parent.name == "model":
        assert cli.model.hparams.num_classes == cli.datamodule.num_classes  # linked, not repeated
    if path.parent.name == "callbacks":  # the group replaces the experiment's list: every entry is there, once
        names = [c["class_path"].rsplit(".", 1)[1] for c in yaml.safe_load(path.read_text())]
        found = [n for n in (type(c).__name__ for c in cli.trainer.callbacks) if n in names]
        assert sorted(found) == sorted(names)  # Lightning moves checkpoint callbacks last


def test_there_are_configs_to_test():
    assert EXPERIMENTS and len(GROUP_FILES) >= 8
