"""The table-protocol cost model: table values for the table's cells, the same recipe trained here for the others
(on tiny Fashion-MNIST IDX files), and its errors."""

import json

import pytest

from hwnas_pl.errors import UserInputError
from hwnas_pl.evaluators.table_protocol import TableProtocolModel, protocol_id, train_cell
from hwnas_pl.spaces import NASBench201Space

IN_TABLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NEW = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|"
PROTOCOL = {"resize": 8, "channels": 2, "cells_per_stage": 1, "train_size": 40, "epochs": 2, "lr": 0.1,
            "batch_size": 8, "seeds": [0, 1], "val_size": 10}  # fmt: skip


@pytest.fixture
def table(tmp_path):
    from datasets import write_mnist

    data = write_mnist(tmp_path / "fmnist", n_train=60, n_test=20)
    csv = tmp_path / "t.csv"
    csv.write_text(f"arch,test_acc,val_acc,protocol\n{IN_TABLE},77.7,76.1,{protocol_id(PROTOCOL)}\n")
    csv.with_suffix(".json").write_text(json.dumps({**PROTOCOL, "data_dir": str(data)}))
    return csv, data


def test_table_cells_are_looked_up_and_others_trained_with_the_protocol(table):
    csv, data = table
    model = TableProtocolModel(NASBench201Space(), csv)
    out = model.evaluate([IN_TABLE, NEW])
    assert out["test_acc"][0] == 77.7 and out["val_acc"][0] == 76.1
    runs = [train_cell(NEW, s, PROTOCOL, str(data)) for s in (0, 1)]
    assert out["test_acc"][1] == pytest.approx((runs[0]["test"] + runs[1]["test"]) / 2)
    assert out["val_acc"][1] == pytest.approx((runs[0]["val"] + runs[1]["val"]) / 2)
    assert list(model.trained) == [NASBench201Space().validate(NEW)]  # trained once, the table cell never
    retrained = TableProtocolModel(NASBench201Space(), csv, lookup=False).evaluate([IN_TABLE])["test_acc"][0]
    assert 0.0 <= retrained <= 100.0 and retrained != 77.7  # 20 test images: a multiple of 2.5


def test_missing_protocol_file_is_one_sentence(table):
    csv, _ = table
    csv.with_suffix(".json").unlink()
    with pytest.raises(UserInputError, match="has no protocol file .*t.json'; expected the JSON"):
        TableProtocolModel(NASBench201Space(), csv)
