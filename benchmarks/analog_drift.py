"""HWA-trained vs digitally trained networks under PCM drift, and the cost of an analog training step.

Same network (SmallCNN) and data (scikit-learn digits): a digital network trained in floating point is (a) mapped
to analog tiles for inference only and (b) fine-tuned hardware-aware on the tiles; both are programmed and
drifted (thesis §5.3.2). Prints one JSON object: accuracy at 1 s and 30 days, AVM = acc(1 s) − acc(30 d) of each,
their ratio (target: HWA's 30-day drop ≥ 2× smaller), and the analog/digital training-step time ratio measured
interleaved on the same batch.

    python benchmarks/analog_drift.py --preset standard_hwa --trials 10
"""

import argparse
import copy
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from hwnas_pl.analog import drift_accuracy, make_rpu_config, to_analog
from hwnas_pl.datamodules import DigitsDataModule
from hwnas_pl.nn.backbones import SmallCNN


def train(net, loader, epochs, lr, analog=False):
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        net.train()
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
            if analog:
                for tile in net.analog_tiles():
                    tile.post_update_step()
        sched.step()


def step_times(digital, analog, batch, repeats):
    x, y = batch
    nets = {"digital": digital, "analog": analog}
    opts = {k: torch.optim.SGD(n.parameters(), lr=0.01) for k, n in nets.items()}
    times = {k: [] for k in nets}
    for _ in range(repeats):
        for key, net in nets.items():
            net.train()
            t0 = time.perf_counter()
            opts[key].zero_grad()
            F.cross_entropy(net(x), y).backward()
            opts[key].step()
            times[key].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="standard_hwa")
    parser.add_argument("--weight_noise", type=float, default=None)
    parser.add_argument("--digital_epochs", type=int, default=15)
    parser.add_argument("--hwa_epochs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    dm = DigitsDataModule(batch_size=64, seed=args.seed)
    dm.setup("fit")
    train_loader, val_loader = dm.train_dataloader(), dm.val_dataloader()
    val = list(val_loader)
    net = SmallCNN(num_classes=10, input_shape=(1, 8, 8), width=32, stages=2)
    t0 = time.perf_counter()
    train(net, train_loader, args.digital_epochs, lr=0.05)
    digital_s = time.perf_counter() - t0

    cfg = make_rpu_config(args.preset, weight_noise=args.weight_noise)
    mapped, _ = to_analog(net, cfg)
    # the mapped network's input (DAC) ranges are set from data, as a deployment would calibrate them
    with torch.no_grad():
        mapped.train()
        for x, _ in train_loader:
            mapped(x)
    hwa = copy.deepcopy(mapped)
    t0 = time.perf_counter()
    train(hwa, train_loader, args.hwa_epochs, lr=0.02, analog=True)
    hwa_s = time.perf_counter() - t0

    times = ["1s", "1h", "1d", "30d", "1y"]
    result = {}
    for name, model in (("digital_mapped", mapped), ("hwa", hwa)):
        r = drift_accuracy(model, lambda: val, times, trials=args.trials, seed=args.seed)
        result[name] = {
            "acc_1s": r.at(1.0),
            "acc_1d": r.at(86400.0),
            "acc_30d": r.at(30 * 86400.0),
            "acc_1y": r.at(365 * 86400.0),
            "avm": r.avm(),
            "sigma_1d": r.sigma_1d(),
        }
    drop = {k: result[k]["avm"] for k in result}
    steps = step_times(net, hwa, next(iter(train_loader)), repeats=30)
    print(
        json.dumps(
            {
                "benchmark": "analog_drift",
                "preset": args.preset,
                "trials": args.trials,
                "digital_epochs": args.digital_epochs,
                "hwa_epochs": args.hwa_epochs,
                **result,
                "avm_ratio_digital_over_hwa": drop["digital_mapped"] / drop["hwa"] if drop["hwa"] else None,
                "step_s": steps,
                "step_ratio_analog_over_digital": steps["analog"] / steps["digital"],
                "train_s": {"digital": digital_s, "hwa": hwa_s},
            }
        )
    )


if __name__ == "__main__":
    main()
