"""Registry-driven conformance of every cost model (timm's test_models habit): shape, finiteness, directions."""

import numpy as np
import pytest

from hwnas_pl.evaluators.base import create_cost_model, list_cost_models
from hwnas_pl.nn.backbones import CifarResNet
from hwnas_pl.spaces import NASBench201Space

SPACE = NASBench201Space()
# each trains networks or needs a trained checkpoint (tests/test_analognas_search.py, tests/evaluators/
# test_table_protocol.py, tests/modules/test_pareto_rank_module.py)
SLOW = {"analog_training", "table_protocol", "pareto_score"}


def _table(tmp_path):
    rows = ["arch,latency_ms,energy_mj"] + [f"{SPACE.to_string(a)},{i + 1.0},{2.0 * i}" for i, a in
                                            enumerate(SPACE.sample(3, np.random.default_rng(0)))]  # fmt: skip
    (tmp_path / "t.csv").write_text("\n".join(rows))
    return {"path": str(tmp_path / "t.csv")}


def _digits():
    from hwnas_pl.datamodules import DigitsDataModule

    return {"datamodule": DigitsDataModule(), "num_classes": 10, "input_shape": (1, 8, 8)}


def _hw_nas_bench(tmp_path):
    from datasets import write_hw_nas_bench

    archs = SPACE.sample(3, np.random.default_rng(0))
    write_hw_nas_bench(tmp_path / "hw.pickle", [SPACE.to_string(a) for a in archs])
    return {"path": str(tmp_path / "hw.pickle")}


KWARGS = {
    "lut": lambda tmp: {"path": None, "input_shape": (3, 16, 16), "repeats": 2, "warmup": 0, "threads": 1},
    "measured": lambda tmp: {"input_shape": (3, 16, 16), "repeats": 2, "warmup": 0, "threads": 1},
    "table": _table,
    "analog_surrogate": lambda tmp: {"train_data": "nasbench201", "n_train": 60, "rounds": 5},
    "hw_nas_bench": _hw_nas_bench,
    "zero_cost": lambda tmp: {**_digits(), "batch_size": 8},
    "rmi_proxy": lambda tmp: {
        **_digits(),
        "reference": CifarResNet(10, (1, 8, 8), depth=8, width=4),
        "n_train": 2,
        "batch_size": 8,
        "pool_size": 16,
    },
}


def _ready(name, model):
    if name == "predictor":  # trained on analytic MACs of a sample, then a cost model like the others
        archs = SPACE.sample(30, np.random.default_rng(1))
        model.fit(archs, [SPACE.count(a).macs / 1e6 for a in archs])
    return model


@pytest.mark.parametrize("name", [n for n in list_cost_models() if n not in SLOW])
def test_cost_model_conformance(name, tmp_path):
    model = _ready(name, create_cost_model(name, SPACE, **KWARGS.get(name, lambda tmp: {})(tmp_path)))
    archs = SPACE.sample(3, np.random.default_rng(0))
    out = model.evaluate(archs)
    assert set(out) == set(model.directions) and set(model.directions.values()) <= {"min", "max"}
    assert all(v.shape == (3,) and np.isfinite(v).all() for v in out.values())
    again = model.evaluate([SPACE.to_string(a) for a in archs])  # strings are the same architectures
    assert all(np.array_equal(out[m], again[m]) for m in out) or name == "measured"


def test_every_plugin_registers():
    assert {"analytic", "table", "lut", "measured", "predictor", "nasbench201_table", "nasbench201_analog",
            "analog_surrogate", "zero_cost", "rmi_proxy", "hw_nas_bench"} <= set(list_cost_models())  # fmt: skip
