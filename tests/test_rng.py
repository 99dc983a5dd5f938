"""Measuring, counting and building for inspection leave the global generators alone (hwnas_pl/rng.py)."""

import random

import lightning as L
import numpy as np
import torch

from hwnas_pl.callbacks import ParetoRankAlphaUpdate
from hwnas_pl.datamodules import DigitsDataModule
from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.evaluators.latency import MeasuredLatencyModel
from hwnas_pl.evaluators.lut import LatencyLUT
from hwnas_pl.modules import SupernetModule
from hwnas_pl.spaces import MBConvSpace, NASBench201Space


def _states():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()


def test_cost_models_leave_the_global_generators_where_they_were():
    nb201, mbconv = NASBench201Space(channels=4, cells=1), MBConvSpace("cifar")
    archs = nb201.sample(3, np.random.default_rng(0))
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    before = _states()
    LatencyLUT(nb201, None, threads=1, input_shape=(3, 16, 16), repeats=1, warmup=0).evaluate(archs)
    MeasuredLatencyModel(nb201, threads=1, input_shape=(3, 16, 16), repeats=1, warmup=0).evaluate(archs[:1])
    AnalyticCostModel(mbconv).evaluate(mbconv.sample(2, np.random.default_rng(0)))
    after = _states()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


def _prpnas_run(tmp_path, lut_path):
    L.seed_everything(0, verbose=False)
    module = SupernetModule(
        NASBench201Space(channels=4, cells=1), 10, (1, 8, 8), warmup_epochs=1,
        cost_model=lambda s, input_shape, num_classes: LatencyLUT(s, lut_path, threads=1, input_shape=input_shape,
                                                                  num_classes=num_classes, repeats=2, warmup=0),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    )  # fmt: skip
    update = ParetoRankAlphaUpdate(n=6, top_n=2, num_batches=1)
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=1,
                        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, callbacks=[update])  # fmt: skip
    trainer.fit(module, DigitsDataModule(batch_size=32))
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_a_prpnas_run_is_the_same_with_a_measured_or_a_cached_lut(tmp_path):
    """The first run measures the LUT on its first epoch, the second reads it: same seed, same weights and α."""
    lut = tmp_path / "lut.json"
    measured = _prpnas_run(tmp_path / "a", lut)
    assert lut.is_file()
    cached = _prpnas_run(tmp_path / "b", lut)
    assert measured.keys() == cached.keys() and all(torch.equal(measured[k], cached[k]) for k in measured)
