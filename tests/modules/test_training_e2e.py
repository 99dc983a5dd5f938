"""The documented workflow as a user runs it: ``hwnas fit`` on the digits config, W&B offline, resume from last."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DIGITS_CONFIG, hwnas_env
from wandb_reader import read_wandb_history

HWNAS = str(Path(sys.executable).parent / "hwnas")
pytestmark = pytest.mark.slow


def hwnas(*args, cwd):
    proc = subprocess.run([HWNAS, *args], cwd=cwd, env=hwnas_env(), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_digits_classifier_trains_logs_and_resumes(tmp_path):
    out = hwnas("fit", "--config", str(DIGITS_CONFIG), "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    run_root = tmp_path / "logs" / "digits_classifier"

    # The summary says where results are, and they are there.
    last = run_root / "checkpoints" / "last.ckpt"
    assert f"last checkpoint: {last}" in out and last.is_file()
    (wandb_run,) = (run_root / "wandb").glob("offline-run-*")
    assert f"logs (WandbLogger): {wandb_run}" in out

    # Real data, real accuracy: the bar is val/acc >= 0.95.
    val_acc = float(re.search(r"metrics: .*val/acc=([0-9.]+)", out).group(1))
    assert val_acc >= 0.95

    # The W&B offline run holds the metrics of every epoch.
    history = read_wandb_history(wandb_run)
    logged = [row["val/acc"] for row in history if "val/acc" in row]
    assert len(logged) == 15 and logged[-1] == pytest.approx(val_acc, abs=1e-4)
    assert sum("train/loss" in row for row in history) == 15

    # Resume: `--ckpt_path last` continues at epoch 15 and trains two more epochs.
    assert torch.load(last, weights_only=True)["epoch"] == 14
    out = hwnas(
        "fit",
        "--config",
        str(DIGITS_CONFIG),
        "--ckpt_path",
        "last",
        "--trainer.max_epochs",
        "17",
        "--trainer.enable_progress_bar",
        "false",
        cwd=tmp_path,
    )
    assert "Restored all states from the checkpoint" in out
    resumed = max(run_root.glob("checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime)
    ckpt = torch.load(resumed, weights_only=True)
    assert ckpt["epoch"] == 16
    new_run = max((run_root / "wandb").glob("offline-run-*"), key=lambda p: p.stat().st_mtime)
    epochs = sorted({row["epoch"] for row in read_wandb_history(new_run) if "epoch" in row})
    assert epochs == [15, 16]


def test_test_and_predict_from_checkpoint(tmp_path):
    args = ["--config", str(DIGITS_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]
    hwnas("fit", *args, "--trainer.max_epochs", "3", cwd=tmp_path)
    last = tmp_path / "logs" / "digits_classifier" / "checkpoints" / "last.ckpt"
    out = hwnas("test", *args, "--ckpt_path", str(last), cwd=tmp_path)
    assert re.search(r"test/acc=0\.\d+", out)
    out = hwnas("predict", *args, "--ckpt_path", str(last), cwd=tmp_path)
    assert "Traceback" not in out
