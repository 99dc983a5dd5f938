"""Every YAML under configs/ parses and instantiates (``run=False``), as the lightning-hydra-template does."""

import pytest
from conftest import CONFIGS, DIGITS_CONFIG

from hwnas_pl.cli import HWNASCLI

EXPERIMENTS = sorted(CONFIGS.glob("*.yaml"))
#: How a group file is put on top of a complete experiment.
GROUP_FLAG = {"trainer": "--trainer", "model": "--model", "data": "--data", "logger": "--trainer.logger"}
GROUP_FILES = sorted(p for group in GROUP_FLAG for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_config_instantiates(path):
    cli = HWNASCLI(args=["--config", str(path), "--trainer.accelerator", "cpu"], run=False)
    assert cli.model is not None and cli.datamodule is not None and cli.trainer is not None


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_group_config_composes_with_an_experiment(path):
    flag = GROUP_FLAG[path.parent.name]
    cli = HWNASCLI(args=["--config", str(DIGITS_CONFIG), flag, str(path), "--trainer.accelerator", "cpu"], run=False)
    assert cli.trainer is not None
    if path.parent.name == "logger":
        assert type(cli.trainer.logger).__name__ in path.read_text()
    if path.parent.name == "model":
        assert cli.model.hparams.num_classes == cli.datamodule.num_classes  # linked, not repeated


def test_there_are_configs_to_test():
    assert EXPERIMENTS and len(GROUP_FILES) >= 8
