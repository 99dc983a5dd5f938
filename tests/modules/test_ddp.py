"""DDP on CPU: two processes with gloo through the CLI and configs/trainer/ddp.yaml."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFIGS, DIGITS_CONFIG, hwnas_env

HWNAS = str(Path(sys.executable).parent / "hwnas")


@pytest.mark.ddp
@pytest.mark.slow
def test_fit_with_two_cpu_processes(tmp_path):
    out_dir = tmp_path / "ranks"
    cmd = [
        HWNAS, "fit", "--config", str(DIGITS_CONFIG), "--trainer", str(CONFIGS / "trainer" / "ddp.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.max_epochs", "2",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=rank_metrics.DumpRankMetrics", f"--trainer.callbacks.out_dir={out_dir}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=hwnas_env(), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["global_rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" and r["epochs"] == 2 for r in ranks)
    # Each rank saw half of the 1,257 training images per epoch (DistributedSampler pads to 629 each).
    assert [r["train_samples"] for r in ranks] == [2 * 629, 2 * 629]
    # Synchronized: the same metrics and the same weights on both ranks.
    for key in ("val/acc", "val/loss", "train/loss", "train/acc", "val/acc_best"):
        assert ranks[0]["metrics"][key] == pytest.approx(ranks[1]["metrics"][key], abs=1e-7), key
    assert ranks[0]["first_weight_sum"] == pytest.approx(ranks[1]["first_weight_sum"], abs=1e-6)
    assert ranks[0]["metrics"]["val/acc"] > 0.8
    assert "last checkpoint:" in proc.stdout  # printed once, by rank 0
    assert proc.stdout.count("hwnas fit finished.") == 1


@pytest.mark.ddp
@pytest.mark.slow
def test_a_user_error_in_two_processes_is_printed_once_and_last(tmp_path):
    cmd = [HWNAS, "fit", "--config", str(DIGITS_CONFIG), "--trainer", str(CONFIGS / "trainer" / "ddp.yaml"),
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.logger", "false",
           "--data.init_args.batch_size", "33"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=hwnas_env(), capture_output=True, text=True, timeout=1800)
    sentence = "hwnas: error: Batch size 33 is not divisible by the number of devices 2; expected a multiple of 2"
    assert proc.returncode != 0 and proc.stderr.count(sentence) == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(sentence)


def test_more_cpu_processes_than_cores_warn():
    from unittest import mock

    import lightning as L

    from hwnas_pl.cli import warn_oversubscribed

    trainer = L.Trainer(accelerator="cpu", devices=3, strategy="ddp", logger=False)
    with mock.patch("os.cpu_count", return_value=2), pytest.warns(UserWarning, match="3 DDP processes on 2 CPU cores"):
        warn_oversubscribed(trainer)
