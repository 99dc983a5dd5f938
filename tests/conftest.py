from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
DIGITS_CONFIG = CONFIGS / "digits_classifier.yaml"

sys.path.insert(0, str(Path(__file__).parent))  # tests' helper modules (datasets, wandb_reader, rank_metrics)


@pytest.fixture(autouse=True)
def _isolated_run(tmp_path, monkeypatch):
    """Every test runs in its own directory with W&B offline and quiet, so nothing lands in the repository."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("HWNAS_DEBUG", raising=False)
    had_service = "WANDB_SERVICE" in os.environ
    yield
    if not had_service:  # wandb.init in a test leaves its service's address for every later subprocess to join
        os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture
def optdigits_dir(tmp_path):
    """A folder with tiny UCI ``optdigits.tra`` (40 rows) and ``optdigits.tes`` (20 rows) files."""
    from datasets import write_optdigits

    root = tmp_path / "optdigits"
    root.mkdir()
    write_optdigits(root / "optdigits.tra", 40, seed=1)
    write_optdigits(root / "optdigits.tes", 20, seed=2)
    return root


def hwnas_env() -> dict[str, str]:
    """Environment for ``hwnas`` subprocesses: the tests' helpers importable, W&B offline."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    env["WANDB_MODE"] = "offline"
    env["WANDB_SILENT"] = "true"
    env.pop("WANDB_SERVICE", None)  # each hwnas process writes its own W&B run files
    return env
