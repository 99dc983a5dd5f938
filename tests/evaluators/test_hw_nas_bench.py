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
    with pytest.raises(ConfigError, match="has no metric 'tpu_energy' for nasbench201 cifar10"):
        HWNASBenchModel(SPACE, tmp_path / "hw.pickle", metrics=["tpu_energy"])
    with pytest.raises(ConfigError, match="dataset 'imagenet' is unknown"):
        HWNASBenchModel(SPACE, tmp_path / "hw.pickle", "imagenet")
    other = next(a for a in SPACE.sample(50, np.random.default_rng(2)) if SPACE.to_string(a) not in archs)
    with pytest.raises(UserInputError, match="has no entry for"):
        HWNASBenchModel(SPACE, tmp_path / "hw.pickle").evaluate([other])
    (tmp_path / "evil.pickle").write_bytes(pickle.dumps({"nasbench201": {"cifar10": Fraction(1, 3)}}))  # a class
    with pytest.raises(UserInputError, match="no nasbench201/cifar10 table in its format"):
        HWNASBenchModel(SPACE, tmp_path / "evil.pickle")


# ---------------------------------------------------------------- FBNet half
def test_fbnet_cost_is_the_sum_of_its_ops_lookup_entries(tmp_path):
    from datasets import write_hw_nas_bench_fbnet

    from hwnas_pl.spaces import FBNetSpace

    tables = write_hw_nas_bench_fbnet(tmp_path / "hw.pickle")
    space = FBNetSpace("cifar")
    arch = ("skip", "k5_e6", "k3_e1_g2") + ("k3_e3",) * 19
    block = "ConvBlock_H{h}_W{h}_Cin{i}_Cout{o}_exp3_kernel3_stride{s}_group1"
    keys = [  # by hand from HW-NAS-Bench's fbnet_get_metrics, cifar100: 32x32, stem stride 1, header 1504
        "ConvNorm_H32_W32_Cin3_Cout16_kernel3_stride1_group1",
        "Skip_H32_W32_Cin16_Cout16_stride1",
        "ConvBlock_H32_W32_Cin16_Cout24_exp6_kernel5_stride1_group1",
        "ConvBlock_H32_W32_Cin24_Cout24_exp1_kernel3_stride1_group2",
        *[block.format(h=32, i=24, o=24, s=1)] * 2,
        block.format(h=32, i=24, o=32, s=2), *[block.format(h=16, i=32, o=32, s=1)] * 3,
        block.format(h=16, i=32, o=64, s=2), *[block.format(h=8, i=64, o=64, s=1)] * 3,
        block.format(h=8, i=64, o=112, s=1), *[block.format(h=8, i=112, o=112, s=1)] * 3,
        block.format(h=8, i=112, o=184, s=2), *[block.format(h=4, i=184, o=184, s=1)] * 3,
        block.format(h=4, i=184, o=352, s=1),
        "ConvNorm_H4_W4_Cin352_Cout1504_kernel1_stride1_group1",
        "AvgP_H4_W4_Cin1504_Cout1504_kernel4_stride1",
        "FC_Cin1504_Cout100",
    ]  # fmt: skip
    model = HWNASBenchModel(space, tmp_path / "hw.pickle", "cifar100", ["pixel3_latency", "eyeriss_energy"])
    out = model.evaluate([arch, space.to_string(arch)])
    for metric in ("pixel3_latency", "eyeriss_energy"):
        assert out[metric] == pytest.approx([sum(tables[metric][k] for k in keys)] * 2)
    default = HWNASBenchModel(space, tmp_path / "hw.pickle", "cifar100")
    assert len(default.directions) == 8 and "edgetpu_latency" not in default.directions
    imagenet = HWNASBenchModel(FBNetSpace("imagenet"), tmp_path / "hw.pickle", "ImageNet", ["fpga_latency"])
    assert np.isfinite(imagenet.evaluate([("k5_e6",) * 22])["fpga_latency"]).all()


def test_fbnet_settings_and_gaps_are_one_sentence(tmp_path):
    from datasets import write_hw_nas_bench_fbnet

    from hwnas_pl.spaces import FBNetSpace

    tables = write_hw_nas_bench_fbnet(tmp_path / "hw.pickle")
    with pytest.raises(ConfigError, match="prices ImageNet FBNet networks with the 'imagenet' skeleton; the space"):
        HWNASBenchModel(FBNetSpace("cifar"), tmp_path / "hw.pickle", "ImageNet")
    with pytest.raises(ConfigError, match="dataset 'cifar10' is unknown for the fbnet space; expected one of: cif"):
        HWNASBenchModel(FBNetSpace("cifar"), tmp_path / "hw.pickle", "cifar10")
    with pytest.raises(ConfigError, match="has no metric 'edgetpu_latency' for fbnet cifar100"):
        HWNASBenchModel(FBNetSpace("cifar"), tmp_path / "hw.pickle", "cifar100", ["edgetpu_latency"])
    del tables["raspi4_latency"]["FC_Cin1504_Cout100"]
    with open(tmp_path / "gap.pickle", "wb") as f:
        pickle.dump({"fbnet": tables}, f)
    model = HWNASBenchModel(FBNetSpace("cifar"), tmp_path / "gap.pickle", "cifar100", ["raspi4_latency"])
    with pytest.raises(UserInputError, match="no fbnet raspi4_latency entry for op 'FC_Cin1504_Cout100'"):
        model.evaluate([("skip",) * 22])
    with pytest.raises(UserInputError, match="has no nasbench201/cifar10 table in its format"):
        HWNASBenchModel(SPACE, tmp_path / "gap.pickle")
