"""A NAS-Bench-201 table's training protocol as a cost model: an architecture's accuracy as the table would list it.

The tables are our own (``benchmarks/nb201_fashionmnist_table.py``).

:class:`TableProtocolModel` (``table_protocol``) answers from the table for a cell it holds and otherwise trains the
cell here with the table's recipe (read from the ``<table>.json`` written beside the CSV): NAS-Bench-201's macro
skeleton with the protocol's ``channels`` and ``cells_per_stage``; Fashion-MNIST resized to ``resize`` pixels,
``train_size`` seeded training images (seed 42); ``epochs`` epochs of SGD (Nesterov momentum 0.9, weight decay 5e-4
on weights only, batch ``batch_size``, ``lr`` warmed up linearly over the first epoch then cosine-annealed to zero
per step), one CPU thread, once per protocol seed (initialisation and batch order); test accuracy on the 10,000
test images, validation accuracy on the ``val_size`` (5,000) held out. What a searched pick is verified with
(``verify`` of a search), so its accuracy is comparable with the table's cells.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_pl.errors import UserInputError
from hwnas_pl.evaluators.base import CostModel, register_cost_model
from hwnas_pl.evaluators.tables import PACKAGE_TABLES, TableCostModel
from hwnas_pl.spaces.base import SearchSpace

#: the protocol's settings (the table's JSON holds them, and its id names them)
PROTOCOL_KEYS = ("resize", "channels", "cells_per_stage", "train_size", "epochs", "lr", "batch_size", "seeds")


def protocol_id(p: dict) -> str:
    """A short name of the training protocol, stored in every row of the table."""
    seeds = "".join(str(s) for s in p["seeds"])
    return (
        f"fmnist{p['resize']}px-C{p['channels']}N{p['cells_per_stage']}-n{p['train_size']}-e{p['epochs']}"
        f"-lr{p['lr']}-b{p['batch_size']}-cos-s{seeds}"
    )


_DATA: dict = {}


def protocol_data(p: dict, data_dir: str) -> dict:
    """Training, validation and test tensors of the protocol (cached per process)."""
    val_size = int(p.get("val_size", 5000))
    key = (data_dir, p["train_size"], p["resize"], val_size)
    if key not in _DATA:
        from hwnas_pl.datamodules import FashionMNISTDataModule

        dm = FashionMNISTDataModule(
            data_dir, val_size=val_size, train_size=p["train_size"], resize=p["resize"], seed=42
        )
        dm.setup()
        _DATA[key] = {"train": dm.data_train.tensors, "val": dm.data_val.tensors, "test": dm.data_test.tensors}
    return _DATA[key]


def _accuracy(net, x, y) -> float:
    import torch

    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), 1000):
            correct += int((net(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum())
    return 100.0 * correct / len(y)


def train_cell(arch: str, seed: int, p: dict, data_dir: str) -> dict:
    """Train one NAS-Bench-201 cell with one seed of protocol ``p``.

    Returns its test and validation accuracy (%), the seconds taken, parameters and MACs.
    """
    import torch
    import torch.nn.functional as F

    from hwnas_pl.nn.counting import count_network
    from hwnas_pl.spaces import NASBench201Space

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = protocol_data(p, data_dir)
        (x, y), side = data["train"], p["resize"]
        space = NASBench201Space(channels=p["channels"], cells=p["cells_per_stage"])
        torch.manual_seed(seed)
        net = space.build(space.validate(arch), 10, (1, side, side))
        counts = count_network(net, (1, side, side))
        decay = [q for q in net.parameters() if q.ndim > 1]
        no_decay = [q for q in net.parameters() if q.ndim <= 1]
        opt = torch.optim.SGD(
            [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
            lr=p["lr"],
            momentum=0.9,
            nesterov=True,
        )
        steps_per_epoch = len(y) // p["batch_size"]
        total, warm = steps_per_epoch * p["epochs"], steps_per_epoch

        def schedule(s: int) -> float:
            return (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(total - warm, 1)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        order_gen = torch.Generator().manual_seed(1000 + seed)
        start = time.perf_counter()
        for _ in range(p["epochs"]):
            net.train()
            order = torch.randperm(len(y), generator=order_gen)
            for i in range(steps_per_epoch):
                idx = order[i * p["batch_size"] : (i + 1) * p["batch_size"]]
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        seconds = time.perf_counter() - start
        return {
            "test": _accuracy(net, *data["test"]),
            "val": _accuracy(net, *data["val"]),
            "seconds": seconds,
            "params": counts.params,
            "macs": counts.macs,
        }
    finally:
        torch.set_num_threads(threads)


@register_cost_model("table_protocol")
class TableProtocolModel(CostModel):
    """``test_acc`` and ``val_acc`` (max, mean over the protocol's seeds) as the table lists them or would.

    Args:
        space: a NAS-Bench-201 space (its strings name the cells; the network is built with the protocol's size).
        table: the table CSV (a file name finds the package's, e.g. ``nb201_fashionmnist.csv``); its protocol is
            read from the JSON beside it.
        data_dir: the Fashion-MNIST IDX files (default: the protocol's).
        lookup: answer from the table for the cells it holds (otherwise train every cell).
    """

    directions = {"test_acc": "max", "val_acc": "max"}

    def __init__(
        self,
        space: SearchSpace,
        table: str | Path = "nb201_fashionmnist.csv",
        data_dir: str | None = None,
        lookup: bool = True,
    ) -> None:
        super().__init__(space)
        self.table = TableCostModel(space, table, {"test_acc": "max", "val_acc": "max"})
        meta = self.table.path.with_suffix(".json")
        if not meta.is_file():
            raise UserInputError(
                f"Table '{self.table.path}' has no protocol file '{meta}'; expected the JSON that "
                "benchmarks/nb201_fashionmnist_table.py writes beside its CSV."
            )
        self.protocol = json.loads(meta.read_text())
        missing = [k for k in PROTOCOL_KEYS if k not in self.protocol]
        if missing:
            raise UserInputError(f"Protocol file '{meta}' has no '{missing[0]}'; expected the keys {PROTOCOL_KEYS}.")
        self.data_dir = data_dir or self.protocol.get("data_dir", "/usr/share/datasets/fashion-mnist")
        self.lookup = lookup
        self.trained: dict[Any, dict[str, float]] = {}

    def measure(self, arch: Any) -> dict[str, float]:
        """Train ``arch`` once per protocol seed (cached)."""
        if arch not in self.trained:
            runs = [train_cell(self.space.to_string(arch), s, self.protocol, self.data_dir) for s in
                    self.protocol["seeds"]]  # fmt: skip
            self.trained[arch] = {"test_acc": float(np.mean([r["test"] for r in runs])),
                                  "val_acc": float(np.mean([r["val"] for r in runs]))}  # fmt: skip
        return self.trained[arch]

    def _evaluate(self, archs: list[Any], out: dict[str, Any]) -> None:
        known = set(self.table.archs) if self.lookup else set()
        listed = [a for a in archs if a in known]
        values = self.table.evaluate(listed) if listed else {}
        row_of = {a: {m: float(values[m][i]) for m in self.directions} for i, a in enumerate(listed)}
        rows = [row_of[a] if a in row_of else self.measure(a) for a in archs]
        for metric in self.directions:
            out[metric] = [row[metric] for row in rows]


__all__ = ["PACKAGE_TABLES", "PROTOCOL_KEYS", "TableProtocolModel", "protocol_data", "protocol_id", "train_cell"]
