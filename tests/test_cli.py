import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, DIGITS_CONFIG

from hwnas_pl.cli import HWNASCLI, cli_main

HWNAS = str(Path(sys.executable).parent / "hwnas")


def build(*args):
    return HWNASCLI(args=["--trainer.logger", "false", *args], run=False)


def last_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


@pytest.mark.parametrize("command", [[HWNAS], [sys.executable, "-m", "hwnas_pl"]])
def test_help_lists_subcommands(command):
    out = subprocess.run([*command, "--help"], capture_output=True, text=True, check=True).stdout
    for sub in ("fit", "validate", "test", "predict"):
        assert f"    {sub} " in out


def test_short_class_names_and_linked_data_values():
    cli = build(
        "--model", "ClassifierModule", "--data", "DigitsDataModule", "--data.resize", "16", "--data.channels", "3"
    )
    assert cli.model.hparams.num_classes == 10
    assert tuple(cli.model.hparams.input_shape) == (3, 16, 16)
    assert cli.model.net.features[0].in_channels == 3
    assert cli.model(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


def test_timm_backbone_by_name():
    cli = build("--model", "ClassifierModule", "--model.backbone", "resnet18", "--data", "DigitsDataModule")
    assert cli.model.net.conv1.in_channels == 1 and cli.model.net.fc.out_features == 10


def test_injected_optimizer_and_scheduler():
    cli = build("--config", str(DIGITS_CONFIG))
    conf = cli.model.configure_optimizers()
    assert isinstance(conf["optimizer"], torch.optim.AdamW)
    assert conf["optimizer"].defaults["lr"] == 0.003 and conf["optimizer"].defaults["weight_decay"] == 1e-4
    assert conf["lr_scheduler"]["scheduler"].T_max == 15


def test_run_dir_interpolation_follows_default_root_dir(tmp_path):
    cli = HWNASCLI(args=["--config", str(DIGITS_CONFIG), "--trainer.default_root_dir", str(tmp_path / "r")], run=False)
    assert Path(cli.trainer.checkpoint_callback.dirpath) == tmp_path / "r" / "checkpoints"
    assert Path(cli.trainer.logger.save_dir) == tmp_path / "r"


def run_cli_error(capsys, *args):
    with pytest.raises(SystemExit) as info:
        cli_main(["fit", "--config", str(DIGITS_CONFIG), "--trainer.logger", "false", *args])
    assert info.value.code == 2
    return last_error_line(capsys)


def test_unknown_config_key_in_yaml(tmp_path, capsys):
    (tmp_path / "typo.yaml").write_text("trainer:\n  max_epochss: 3\n")
    line = run_cli_error(capsys, "--config", str(tmp_path / "typo.yaml"))
    assert line == (
        "hwnas: error: Unknown config key 'trainer.max_epochss'; expected one of the keys listed by --help. "
        "Did you mean 'trainer.max_epochs'?"
    )


def test_unknown_model_argument(capsys):
    line = run_cli_error(capsys, "--model.init_args.lr", "0.1")
    assert line.startswith("hwnas: error: 'lr' is not an argument of hwnas_pl.modules.ClassifierModule under config ")
    expected = "backbone, num_classes, input_shape, optimizer, scheduler, label_smoothing, loss_terms, transforms."
    assert f"expected one of: {expected}" in line


def test_unknown_nested_argument_suggests_the_closest(capsys):
    line = run_cli_error(capsys, "--model.init_args.optimizer.init_args.lrr", "0.1")
    assert "'lrr' is not an argument of torch.optim.AdamW" in line and line.endswith("Did you mean 'lr'?")


def test_abbreviated_option_is_not_silently_accepted(capsys):
    line = run_cli_error(capsys, "--trainer.max_epoch", "3")
    assert line.endswith(
        "Unknown option '--trainer.max_epoch'; expected one of the options listed by --help. "
        "Did you mean 'trainer.max_epochs'?"
    )


@pytest.mark.parametrize(
    ("key", "value", "base"),
    [("--model", "NoSuchModule", "LightningModule"), ("--data", "hwnas_pl.datamodules.Nope", "LightningDataModule")],
)
def test_unknown_class_name(capsys, key, value, base):
    line = run_cli_error(capsys, key, value)
    assert line.startswith(f"hwnas: error: Unknown or unsuitable class '{value}' under config key '{key[2:]}'; ")
    assert f"expected the class_path or short name of a {base} subclass" in line


def test_wrong_value_type(capsys):
    line = run_cli_error(capsys, "--data.init_args.batch_size", "many")
    assert line == "hwnas: error: Config key 'data.init_args.batch_size' got 'many'; expected a value of type int."


def test_missing_data_dir(tmp_path, capsys):
    line = run_cli_error(capsys, "--data.init_args.data_dir", str(tmp_path / "absent"))
    assert line == (
        f"hwnas: error: Digits data_dir '{tmp_path / 'absent'}' does not exist; expected a directory holding the UCI "
        "files optdigits.tra and/or optdigits.tes (65 comma-separated integers per row) (set it with "
        "--data.init_args.data_dir)."
    )


def test_missing_checkpoint(capsys):
    line = run_cli_error(capsys, "--ckpt_path", "gone.ckpt")
    assert line.startswith("hwnas: error: Checkpoint 'gone.ckpt' does not exist; expected a path to a .ckpt file")


def test_checkpoint_of_another_model_class(tmp_path, capsys):
    torch.save({"hyper_parameters": {"_class_path": "other_pkg.SegModule"}, "state_dict": {}}, tmp_path / "o.ckpt")
    line = run_cli_error(capsys, "--ckpt_path", str(tmp_path / "o.ckpt"))
    assert line == (
        f"hwnas: error: Checkpoint '{tmp_path / 'o.ckpt'}' was written by other_pkg.SegModule, but the config's model "
        "is hwnas_pl.modules.ClassifierModule; expected a checkpoint of hwnas_pl.modules.ClassifierModule."
    )


def test_checkpoint_of_another_configuration(tmp_path, capsys):
    """Same class, other input size: the linked shapes differ and the weights cannot load."""
    cli_main(
        [
            "fit",
            "--config",
            str(DIGITS_CONFIG),
            "--trainer.logger",
            "false",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "1",
            "--trainer.limit_val_batches",
            "1",
            "--model.init_args.backbone",
            "mlp",
            "--trainer.default_root_dir",
            str(tmp_path / "a"),
        ]
    )
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    line = run_cli_error(
        capsys, "--model.init_args.backbone", "mlp", "--data.init_args.resize", "16", "--ckpt_path", str(ckpt)
    )
    assert line.startswith(
        f"hwnas: error: Checkpoint '{ckpt}' (it was written by hwnas_pl.modules.ClassifierModule) "
        "does not fit ClassifierModule: 1 tensor of other shapes (e.g. 'net.net.1.weight': "
        "(128, 64) in the checkpoint, (128, 256) in the model)"
    )


def test_configs_folder_has_the_groups():
    for group in ("trainer", "model", "data", "logger"):
        assert list((CONFIGS / group).glob("*.yaml")), group


def test_an_argument_that_contradicts_the_checkpoint_is_one_sentence(tmp_path, capsys):
    """Lightning takes the model settings from a checkpoint; an explicit other value is refused, not ignored."""
    args = ["fit", "--config", str(DIGITS_CONFIG), "--trainer.logger", "false", "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
            "--trainer.default_root_dir", str(tmp_path / "a")]  # fmt: skip
    cli_main(args)
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    line = run_cli_error(capsys, "--model.init_args.label_smoothing", "0.2", "--ckpt_path", str(ckpt))
    assert line == (
        f"hwnas: error: Checkpoint '{ckpt}' was trained with model.init_args.label_smoothing=0.0, but the config "
        "sets 0.2; expected the checkpoint's own setting (drop the argument, or train a new run without --ckpt_path)."
    )
    # the same config and the checkpoint agree: testing it runs and prints the summary
    cli_main(["test", "--config", str(DIGITS_CONFIG), "--trainer.logger", "false", "--trainer.limit_test_batches", "1",
              "--ckpt_path", str(ckpt)])  # fmt: skip
    assert "hwnas test finished." in capsys.readouterr().out


def test_a_finished_checkpoint_says_there_is_nothing_left_to_train(tmp_path, capsys):
    args = ["fit", "--config", str(DIGITS_CONFIG), "--trainer.logger", "false", "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]  # fmt: skip
    cli_main([*args, "--trainer.default_root_dir", str(tmp_path / "a")])
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    cli_main([*args, "--trainer.default_root_dir", str(tmp_path / "b"), "--ckpt_path", str(ckpt)])  # a new folder
    out = capsys.readouterr().out
    assert f"checkpoint '{ckpt}' has already trained 1 epochs (trainer.max_epochs is 1); nothing left to train" in out
    assert "hwnas fit finished." in out  # and the summary still prints
    cli_main([*args[:6], "2", *args[7:], "--trainer.default_root_dir", str(tmp_path / "c"), "--ckpt_path", str(ckpt)])
    assert "nothing left to train" not in capsys.readouterr().out  # one epoch is left: it trains
