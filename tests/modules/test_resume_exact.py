"""Killed at an epoch boundary and resumed from last.ckpt, a run ends where the uninterrupted run ends (issue 14)."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from hwnas_pl.callbacks import OperationPruning, ParetoRankAlphaUpdate
from hwnas_pl.datamodules import DigitsDataModule
from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.modules import AnalogModule, ClassifierModule, SupernetModule
from hwnas_pl.spaces import NASBench201Space


def _classifier():
    return ClassifierModule("small_cnn", 10, (1, 8, 8)), []


def _analog():  # one digital epoch, then HWA training with weight noise drawn from the global generator
    return AnalogModule("mlp", 10, (1, 8, 8), preset="standard_hwa_torch", digital_epochs=1), []


def _prpnas():
    module = SupernetModule(NASBench201Space(channels=4, cells=1), 10, (1, 8, 8), warmup_epochs=1,
                            cost_model=AnalyticCostModel, path="sample",
                            optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))  # fmt: skip
    return module, [ParetoRankAlphaUpdate(n=8, top_n=3, num_batches=1),
                    OperationPruning(at_epochs=[2], num_samples=12, keep=3, num_batches=1)]  # fmt: skip


def _tensors(state, prefix=""):
    out = {}
    for key, value in state.items():
        if torch.is_tensor(value):
            out[prefix + key] = value
        elif isinstance(value, dict):
            out.update(_tensors(value, f"{prefix}{key}."))
    return out


def _fit(root, epochs, make, ckpt=None):
    L.seed_everything(0, verbose=False)
    module, callbacks = make()
    checkpoint = ModelCheckpoint(dirpath=root / "ck", filename="last", save_on_train_epoch_end=True,
                                 enable_version_counter=False)  # fmt: skip
    trainer = L.Trainer(default_root_dir=root, max_epochs=epochs, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_train_batches=4,
                        limit_val_batches=2, callbacks=[*callbacks, checkpoint])  # fmt: skip
    trainer.fit(module, DigitsDataModule(batch_size=32), ckpt_path=ckpt)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("make", [_classifier, _analog, _prpnas], ids=["fit", "analog", "prpnas"])
def test_resume_at_an_epoch_boundary_equals_the_uninterrupted_run(make, tmp_path):
    straight = _fit(tmp_path / "a", 4, make)
    _fit(tmp_path / "b", 2, make)  # "killed" after epoch 2
    resumed = _fit(tmp_path / "b", 4, make, ckpt=tmp_path / "b" / "ck" / "last.ckpt")
    a, b = _tensors(straight.state_dict()), _tensors(resumed.state_dict())
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    if isinstance(straight, SupernetModule):
        assert straight.pruned == resumed.pruned and torch.equal(straight.alpha, resumed.alpha)
