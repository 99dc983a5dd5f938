"""HW-NAS-Bench's published pickle: values by the benchmark's own index, via each config's arch_str; its errors."""

import pickle
from fractions import Fraction

import numpy as np
import pytest
from datasets import write_hw_nas_bench

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.hw_nas_bench import HWNASBenchModel
from hwnas_pl.spaces import NASBench201Space

SPACE = NASBench201Space()


def test_costs_come_from_the_index_its_config_names(tmp_path):
    archs = [SPACE.to_string(a) for a in SPACE.sample(6, np.random.default_rng(1))]
    values = write_hw_nas_bench(tmp_path / "hw.pickle", archs)
    model = HWNASBenchModel(SPACE, tmp_path / "hw.pickle", "cifar100", ["edgegpu_latency", "fpga_energy"])
    out = model.evaluate([archs[4], archs[0]])
    assert model.directions == {"edgegpu_latency": "min", "fpga_energy": "min"}
    assert out["edgegpu_latency"].tolist() == [values["cifar100"]["edgegpu_latency"][i] for i in (4, 0)]
    assert out["fpga_energy"].tolist() == [values["cifar100"]["fpga_energy"][i] for i in (4, 0)]
    default = HWNASBenchModel(SPACE, tmp_path / "hw.pickle")
    assert "eyeriss_arithmetic_intensity" not in default.directions and len(default.directions) == 9


def test_bad_files_and_settings_are_one_sentence(tmp_path):
    archs = [SPACE.to_string(a) for a in SPACE.sample(2, np.random.default_rng(1))]
    write_hw_nas_bench(tmp_path / "hw.pickle", archs)
    with pytest.raises(UserInputError, match="'missing.pickle' does not exist; expected HW-NAS-Bench-v1_0.pickle"):
        HWNASBenchModel(SPACE, "missing.pickle")
    with pytest.raises(ConfigError, match="has no metric 'tpu_energy' for cifar10"):
        HWNASBenchModel(SPACE, tmp_path / "hw.pickle", metrics=["tpu_energy"])
    with pytest.raises(ConfigError, match="dataset 'imagenet' is unknown"):
        HWNASBenchModel(SPACE, tmp_path / "hw.pickle", "imagenet")
    other = next(a for a in SPACE.sample(50, np.random.default_rng(2)) if SPACE.to_string(a) not in archs)
    with pytest.raises(UserInputError, match="has no entry for"):
        HWNASBenchModel(SPACE, tmp_path / "hw.pickle").evaluate([other])
    (tmp_path / "evil.pickle").write_bytes(pickle.dumps({"nasbench201": {"cifar10": Fraction(1, 3)}}))  # a class
    with pytest.raises(UserInputError, match="no nasbench201/cifar10 table in its format"):
        HWNASBenchModel(SPACE, tmp_path / "evil.pickle")
