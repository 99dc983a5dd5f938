import csv
import json

import pytest
import torch
from torch import nn

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.evaluators.base import list_cost_models
from hwnas_pl.evaluators.latency import MeasuredLatencyModel, measure_module, resolve_device
from hwnas_pl.evaluators.lut import LatencyLUT, LUTMissingOpError, LUTProfileError
from hwnas_pl.evaluators.tables import TableCostModel
from hwnas_pl.nn.counting import count_network
from hwnas_pl.spaces import NASBench201Space

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def space():
    return NASBench201Space(channels=8, cells=1)


def test_counts_by_hand():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False),  # out 4x4x4: 64 positions x 27 = 1728 MACs
        nn.Conv2d(4, 4, 3, padding=1, groups=4),  # depthwise: 64 x 9 = 576 MACs, 40 params
        nn.Flatten(),
        nn.Linear(64, 5),  # 320 MACs, 325 params
    )
    c = count_network(net, (3, 8, 8))
    assert c.macs == 1728 + 576 + 320 and c.flops == 2 * c.macs
    assert c.params == 108 + 40 + 325
    assert (c.n_convs, c.first_channels, c.last_channels, c.downsamplings) == (2, 4, 4, 1)


def test_analytic_cost_model_matches_counts(space):
    out = AnalyticCostModel(space, input_shape=(3, 16, 16)).evaluate([BEST, NONE])
    net = space.build(BEST, 10, (3, 16, 16))
    assert out["params"][0] == sum(p.numel() for p in net.parameters())
    assert out["macs"][0] == count_network(net, (3, 16, 16)).macs and out["flops"][0] == 2 * out["macs"][0]
    assert out["memory_mb"][0] == pytest.approx(out["params"][0] * 4 / 2**20)
    assert out["flops"][1] < out["flops"][0]


def test_measured_latency_is_positive_and_ordered(space):
    model = MeasuredLatencyModel(space, repeats=5, warmup=1, threads=1, input_shape=(3, 16, 16))
    out = model.evaluate([BEST, NONE])
    assert (out["latency_ms"] > 0).all() and (out["latency_iqr_ms"] >= 0).all()
    big = measure_module(nn.Conv2d(64, 64, 3, padding=1), (64, 32, 32), repeats=5, threads=1).median_ms
    small = measure_module(nn.Identity(), (64, 32, 32), repeats=5, threads=1).median_ms
    assert big > small


def test_unknown_or_absent_device():
    with pytest.raises(ConfigError, match="Unknown device 'tpu7'"):
        resolve_device("tpu7")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="this machine has no CUDA device"):
            resolve_device("cuda:0")


def test_lut_ops_cover_the_network(space):
    """The LUT's op list is the network's executed ops: same MACs when each op is counted standalone."""
    ops = space.latency_ops(BEST, 10, (3, 16, 16))
    total = sum(count_network(op.build(), op.input_shape).macs for op in ops)
    assert total == count_network(space.build(BEST, 10, (3, 16, 16)), (3, 16, 16)).macs
    assert {op.key.split(":")[0].split("@")[0] for op in ops} >= {"stem", "nor_conv_3x3", "skip_connect", "head"}


def test_lut_saves_with_profile_and_refuses_other_profiles(space, tmp_path):
    path = tmp_path / "lut.json"
    lut = LatencyLUT(space, path, threads=1, batch_size=1, input_shape=(3, 16, 16), repeats=3, warmup=1)
    est = lut.evaluate([BEST, NONE])["latency_ms"]
    assert est[0] > est[1] > 0
    data = json.loads(path.read_text())
    assert data["profile"]["threads"] == 1 and data["profile"]["batch_size"] == 1
    assert data["profile"]["device"].startswith("cpu: ") and data["profile"]["space"] == "nasbench201"
    # the sum of the entries of the architecture's ops, by definition
    keys = [op.key for op in space.latency_ops(BEST, 10, (3, 16, 16))]
    assert est[0] == pytest.approx(sum(data["entries"][k] for k in keys))
    # reloaded for the same profile: same values, nothing measured again
    again = LatencyLUT(space, path, threads=1, batch_size=1, input_shape=(3, 16, 16), strict=True)
    assert again.evaluate([BEST])["latency_ms"][0] == pytest.approx(est[0])
    with pytest.raises(LUTProfileError, match=r"another device profile \(batch_size: 1 in the file, 8 here\)"):
        LatencyLUT(space, path, threads=1, batch_size=8, input_shape=(3, 16, 16))


def test_strict_lut_names_the_missing_op(space, tmp_path):
    lut = LatencyLUT(space, None, threads=1, input_shape=(3, 16, 16), repeats=2, warmup=0, strict=True)
    lut.build_for([NONE])
    with pytest.raises(LUTMissingOpError, match=r"has no entry for op 'nor_conv_3x3:8@8x16x16'"):
        lut.evaluate([BEST])


def test_not_a_lut_file(space, tmp_path):
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(UserInputError, match="is not a lookup table"):
        LatencyLUT(space, tmp_path / "x.json")


def test_table_cost_model_csv_and_json(space, tmp_path):
    (tmp_path / "t.csv").write_text(f"arch,latency_ms,energy_mj\n{BEST},4.5,12\n{NONE},0.5,1\n")
    model = TableCostModel(space, tmp_path / "t.csv", {"latency_ms": "min"})
    assert model.evaluate([NONE, BEST])["latency_ms"].tolist() == [0.5, 4.5]
    (tmp_path / "t.json").write_text(json.dumps([{"arch": BEST, "energy_mj": 12}]))
    assert TableCostModel(space, tmp_path / "t.json").evaluate([BEST])["energy_mj"].tolist() == [12.0]
    with pytest.raises(ConfigError, match="has no row for"):
        model.evaluate(["|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"])
    with pytest.raises(ConfigError, match="has no column 'power'"):
        TableCostModel(space, tmp_path / "t.csv", {"power": "min"})


def test_shipped_fashion_mnist_table_is_found_by_name_and_its_text_column_is_not_a_metric(space, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no such file here: the package's own table
    model = TableCostModel(space, "nb201_fashionmnist.csv")
    assert "protocol" not in model.metrics and {"test_acc", "test_acc_s0", "test_acc_s1", "params"} <= set(
        model.metrics
    )
    assert len(model.archs) >= 8
    rows = list(csv.DictReader(model.path.open()))
    first = rows[0]
    # the mean column is the mean of the two seeds' accuracies (3 decimals)
    assert float(first["test_acc"]) == pytest.approx(
        (float(first["test_acc_s0"]) + float(first["test_acc_s1"])) / 2, abs=1e-3
    )
    assert model.evaluate([first["arch"]])["test_acc"].tolist() == [float(first["test_acc"])]
    assert all(r["protocol"] == first["protocol"] for r in rows)


def test_cost_model_rejects_architectures_of_other_spaces(space):
    with pytest.raises(ConfigError, match="Unknown NAS-Bench-201 op 'mbconv_k3_e6'"):
        AnalyticCostModel(space).evaluate([("mbconv_k3_e6",) * 6])


def test_registry_lists_cost_models():
    import hwnas_pl.evaluators.nasbench201  # noqa: F401  (registers the table model)

    assert {"analytic", "measured", "lut", "table", "nasbench201_table"} <= set(list_cost_models())


def test_lut_latency_is_the_sum_of_its_op_entries(tmp_path):
    """A network's LUT latency is the sum of the table's entries for the ops it executes, each op as often as it runs.

    Whether the LUT ranks networks as end-to-end measurement does is a timing claim, measured on 200 networks by
    ``benchmarks/lut_vs_measured.py`` (a loaded machine reorders close latencies, so no test asserts it).
    """
    space = NASBench201Space()
    archs = [NONE, "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", BEST, ("nor_conv_3x3",) * 6]
    lut = LatencyLUT(space, tmp_path / "lut.json", threads=1, repeats=2, warmup=0, input_shape=(3, 16, 16))
    lut.build_for(archs)
    keys = [[op.key for op in space.latency_ops(space.validate(a), 10, (3, 16, 16))] for a in archs]
    expected = [sum(lut.entries[k] for k in ks) for ks in keys]
    assert lut.evaluate(archs)["latency_ms"].tolist() == pytest.approx(expected, rel=1e-12)
    # the all-3x3 cell runs a 3x3 convolution on every edge of every cell: 6 per cell, 15 cells
    assert sum("nor_conv_3x3" in k for k in keys[3]) == 6 * 15 and not any("nor_conv_3x3" in k for k in keys[0])
    # the same entries come back from the file: a LUT measures once, then estimates without timing anything
    again = LatencyLUT(space, tmp_path / "lut.json", threads=1, input_shape=(3, 16, 16), strict=True)
    assert again.evaluate(archs)["latency_ms"].tolist() == pytest.approx(expected, rel=1e-12)
