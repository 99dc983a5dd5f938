"""Analog/digital training-step time ratio against the number of analog tiles (issue 16's audit item).

Two families of networks, each at several depths, so the tile count grows while the work per tile stays fixed:

- **mlp**: ``depth`` Linear(width, width) + ReLU layers (one tile each at the preset's tile size, as long as
  ``width`` ≤ the tile's rows and columns);
- **cnn**: ``depth`` 3×3 Conv(width, width) + ReLU layers on 16×16 maps, then a Linear head.

Each network is converted with :func:`hwnas_pl.analog.to_analog` (the preset's training noise included), and one
SGD step (forward, backward, step, ``post_update_step``) is timed on the same batch for the digital and the analog
copy, interleaved, ``repeats`` times; the median of each is reported with their ratio. A linear fit of the analog
step time against the tile count separates the per-tile overhead from the base cost. One thread.

    python benchmarks/analog_step_time.py                       # about 2 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas_pl.analog import make_rpu_config, to_analog


def network(kind: str, depth: int, width: int, classes: int = 10) -> nn.Module:
    if kind == "mlp":
        layers = [m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())]
        return nn.Sequential(*layers, nn.Linear(width, classes))
    layers = [m for _ in range(depth) for m in (nn.Conv2d(width, width, 3, padding=1), nn.ReLU())]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))


def step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, analog: bool) -> float:
    t0 = time.perf_counter()
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()
    if analog:
        for tile in net.analog_tiles():
            tile.post_update_step()
    return time.perf_counter() - t0


def measure(kind: str, depth: int, args, cfg) -> dict:
    torch.manual_seed(0)
    digital = network(kind, depth, args.width)
    analog, _ = to_analog(digital, cfg)
    shape = (args.batch, args.width) if kind == "mlp" else (args.batch, args.width, 16, 16)
    x, y = torch.randn(shape), torch.randint(0, 10, (args.batch,))
    nets = {"digital": (digital, False), "analog": (analog, True)}
    opts = {k: torch.optim.SGD(n.parameters(), lr=1e-3) for k, (n, _) in nets.items()}
    times: dict[str, list[float]] = {k: [] for k in nets}
    for i in range(args.repeats + 2):
        for key, (net, is_analog) in nets.items():
            net.train()
            t = step(net, opts[key], x, y, is_analog)
            if i >= 2:  # two warm-up steps
                times[key].append(t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "kind": kind,
        "depth": depth,
        "tiles": int(analog.analog_tile_count()),
        "digital_ms": 1000 * med["digital"],
        "analog_ms": 1000 * med["analog"],
        "ratio": med["analog"] / med["digital"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="analognas")
    parser.add_argument("--weight_noise", type=float, default=0.15)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = make_rpu_config(args.preset, weight_noise=args.weight_noise)
    rows = [measure(kind, d, args, cfg) for kind in ("mlp", "cnn") for d in args.depths]
    fits = {}
    for kind in ("mlp", "cnn"):
        r = [row for row in rows if row["kind"] == kind]
        tiles = np.array([row["tiles"] for row in r], dtype=float)
        slope, base = np.polyfit(tiles, [row["analog_ms"] for row in r], 1)
        dslope, dbase = np.polyfit(tiles, [row["digital_ms"] for row in r], 1)
        fits[kind] = {
            "analog_ms_per_tile": float(slope),
            "analog_base_ms": float(base),
            "digital_ms_per_layer": float(dslope),
            "digital_base_ms": float(dbase),
            "ratio_at_fewest_tiles": r[0]["ratio"],
            "ratio_at_most_tiles": r[-1]["ratio"],
        }
    print(
        json.dumps(
            {
                "benchmark": "analog_step_time",
                "settings": vars(args),
                "rows": rows,
                "fit": fits,
                "reference": "issue 16 audit: 2.2x at 3 tiles, 11x at 22 tiles",
            }
        )
    )


if __name__ == "__main__":
    main()
