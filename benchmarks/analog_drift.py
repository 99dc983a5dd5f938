"""HWA-trained vs digitally trained networks under PCM drift on Fashion-MNIST (thesis §5.3.2), over seeds.

For each training seed, the same network (SmallCNN) is

- trained ``digital_epochs`` in floating point (**digital**), then mapped to analog tiles for inference only;
- the same digital weights fine-tuned ``hwa_epochs`` hardware-aware on the tiles (**hwa**);
- the same digital weights trained ``hwa_epochs`` more in floating point and mapped (**digital_extra**: the control
  for the extra epochs);

every mapping for inference goes through :func:`hwnas_pl.analog.inference.map_for_inference` (remap, input ranges
calibrated on training batches in eval mode). Each network is programmed ``trials`` times and drifted to 1 s, 1 d,
30 d and 1 y (the first ``test_size`` test images). Prints one JSON object: per seed and as mean ± 95 % CI over
seeds, the accuracy at each time and AVM = acc(1 s) − acc(30 d) in points, and the test of the target: HWA's
30-day drop ≤ ½ of the digital one, significant across seeds (one-sided paired t-test of digital AVM − 2 × HWA AVM
> 0). Also the analog/digital training-step time ratio, measured interleaved on one batch.

    python benchmarks/analog_drift.py --seeds 0 1 2 --trials 10                     # about 25 min on 2 cores
    python benchmarks/analog_drift.py --preset analognas --weight_noise 0.15 ...    # the README's setting
    python benchmarks/analog_drift.py --seeds 0 1 --decompose    # where the 30-day drop comes from

``--decompose`` evaluates the same trained networks again with parts of the PCM model off (:data:`CONDITIONS`):
drift (``drift_scale`` 0), read noise (``read_noise_scale`` 0), both (programming noise alone, which does not
depend on time), and the global drift compensation, so that HWA's gain can be traced to the part it counters.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from hwnas_pl.analog import drift_accuracy, make_rpu_config, set_tile_config, to_analog
from hwnas_pl.analog.drift import difference_ci
from hwnas_pl.analog.inference import map_for_inference, periphery_parameter_names, restart_input_ranges
from hwnas_pl.datamodules import FashionMNISTDataModule
from hwnas_pl.nn.backbones import SmallCNN

TIMES = {"1s": 1.0, "1d": 86400.0, "30d": 30 * 86400.0, "1y": 365 * 86400.0}


def train(net, loader, epochs, lr, analog=False):
    """SGD momentum 0.9, wd 5e-4 (none on the tiles' learned periphery), cosine to 0 over ``epochs``."""
    periphery = periphery_parameter_names(net)
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n not in periphery]},
        {"params": [p for n, p in named if n in periphery], "weight_decay": 0.0},
    ]
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * len(loader))
    for _ in range(epochs):
        net.train()
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
            sched.step()
            if analog:
                for tile in net.analog_tiles():
                    tile.post_update_step()


def step_times(digital, analog, batch, repeats):
    x, y = batch
    nets = {"digital": digital, "analog": analog}
    opts = {k: torch.optim.SGD(n.parameters(), lr=0.0) for k, n in nets.items()}
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


def one_seed(args, seed: int) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    dm = FashionMNISTDataModule(
        args.data_dir, batch_size=128, train_size=args.train_size, seed=seed, resize=args.resize
    )
    dm.setup("fit")
    dm.setup("test")
    train_loader = dm.train_dataloader()
    first = torch.utils.data.Subset(dm.data_test, range(min(args.test_size, len(dm.data_test))))
    test = list(torch.utils.data.DataLoader(first, batch_size=500))  # the same images for every network
    calib = list(train_loader)[: args.calibration_batches]
    cfg = make_rpu_config(args.preset, weight_noise=args.weight_noise)

    net = SmallCNN(num_classes=10, input_shape=dm.input_shape, width=args.width, stages=2)
    t0 = time.perf_counter()
    train(net, train_loader, args.digital_epochs, lr=0.05)
    seconds = {"digital": time.perf_counter() - t0}
    extra = copy.deepcopy(net)
    t0 = time.perf_counter()
    train(extra, train_loader, args.hwa_epochs, lr=args.hwa_lr)
    seconds["digital_extra"] = time.perf_counter() - t0

    hwa, _ = to_analog(net, cfg)
    hwa.remap_analog_weights()
    restart_input_ranges(hwa)  # initialised from the first HWA batches, as in training from the start
    t0 = time.perf_counter()
    train(hwa, train_loader, args.hwa_epochs, lr=args.hwa_lr, analog=True)
    seconds["hwa"] = time.perf_counter() - t0
    set_tile_config(hwa, cfg)

    models = {"digital": to_analog(net, cfg)[0], "digital_extra": to_analog(extra, cfg)[0], "hwa": hwa}
    for name in ("digital", "digital_extra"):
        map_for_inference(models[name], cfg, calib, args.calibration_batches)
    out: dict = {"seed": seed, "train_s": seconds}
    for name, model in models.items():
        r = drift_accuracy(model, lambda: test, list(TIMES.values()), trials=args.trials, seed=1000 + seed)
        out[name] = {
            **{f"acc_{k}": 100 * r.at(t) for k, t in TIMES.items()},
            "avm": 100 * r.avm(),
            "avm_ci95": [100 * v for v in difference_ci(r.avm_trials())["ci95"]],
            "sigma_1d": 100 * r.sigma_1d(),
        }
    if args.decompose:
        out["decomposition"] = decompose(models, cfg, test, args.trials, seed)
    analog_net, _ = to_analog(net, cfg)
    out["step_s"] = step_times(net, analog_net, next(iter(train_loader)), repeats=20)
    out["tiles"] = analog_net.analog_tile_count()
    return out


#: inference conditions of --decompose: which of the PCM model's parts the 30-day drop comes from
CONDITIONS = {
    "full": {},
    "no_drift": {"drift_scale": 0.0},
    "no_read_noise": {"read_noise_scale": 0.0},
    "programming_only": {"drift_scale": 0.0, "read_noise_scale": 0.0},
    "no_compensation": {"drift_compensation": None},
}


def condition_config(cfg, changes: dict):
    """``cfg`` with the noise model's scales or the drift compensation changed (a copy)."""
    cfg = copy.deepcopy(cfg)
    for key, value in changes.items():
        if key == "drift_compensation":
            cfg.drift_compensation = value
        else:
            setattr(cfg.noise_model, key, value)
    return cfg


def decompose(models: dict, cfg, test, trials: int, seed: int) -> dict:
    """AVM and accuracies of each model under each of :data:`CONDITIONS`, the same programming seeds throughout."""
    out: dict = {}
    for condition, changes in CONDITIONS.items():
        for name, model in models.items():
            set_tile_config(model, condition_config(cfg, changes))
            r = drift_accuracy(model, lambda: test, list(TIMES.values()), trials=trials, seed=1000 + seed)
            out.setdefault(condition, {})[name] = {**{f"acc_{k}": 100 * r.at(t) for k, t in TIMES.items()},
                                                   "avm": 100 * r.avm()}  # fmt: skip
    for model in models.values():
        set_tile_config(model, cfg)
    return out


def over_seeds(runs: list[dict], name: str, key: str) -> dict:
    values = np.array([r[name][key] for r in runs])
    ci = difference_ci(values)
    return {"mean": float(values.mean()), "ci95": ci["ci95"] if ci else None, "per_seed": values.round(3).tolist()}


def main() -> None:
    from scipy import stats

    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--preset", default="analognas")
    parser.add_argument("--weight_noise", type=float, default=0.15)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--train_size", type=int, default=20000)
    parser.add_argument("--resize", type=int, default=16)
    parser.add_argument("--test_size", type=int, default=5000)
    parser.add_argument("--digital_epochs", type=int, default=6)
    parser.add_argument("--hwa_epochs", type=int, default=3)
    parser.add_argument("--hwa_lr", type=float, default=0.01)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--calibration_batches", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--decompose", action="store_true",
                        help="also evaluate every model without drift, without read noise, with programming noise "
                             "only and without drift compensation")  # fmt: skip
    args = parser.parse_args()

    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(one_seed, [args] * len(args.seeds), args.seeds))
    names = ("digital", "digital_extra", "hwa")
    summary = {n: {k: over_seeds(runs, n, k) for k in ("acc_1s", "acc_1d", "acc_30d", "acc_1y", "avm")} for n in names}
    avm = {n: np.array([r[n]["avm"] for r in runs]) for n in names}
    margin = avm["digital"] - 2 * avm["hwa"]  # > 0  <=>  HWA's drop is below half the digital one
    test = stats.ttest_1samp(margin, 0.0, alternative="greater") if len(runs) > 1 else None
    steps = [r["step_s"]["analog"] / r["step_s"]["digital"] for r in runs]
    print(
        json.dumps(
            {
                "benchmark": "analog_drift_fashionmnist",
                "settings": {k: v for k, v in vars(args).items() if k != "workers"},
                "over_seeds": summary,
                "avm_ratio_hwa_over_digital": float(avm["hwa"].mean() / avm["digital"].mean()),
                "avm_difference_digital_minus_hwa": difference_ci(avm["digital"] - avm["hwa"]),
                "target_hwa_drop_at_most_half": {
                    "met_on_mean": bool(avm["hwa"].mean() <= 0.5 * avm["digital"].mean()),
                    "p_value_paired": float(test.pvalue) if test is not None else None,
                },
                "acc_30d_gain_hwa_minus_digital_extra": difference_ci(
                    np.array([r["hwa"]["acc_30d"] - r["digital_extra"]["acc_30d"] for r in runs])
                ),
                "step_ratio_analog_over_digital": float(np.median(steps)),
                "tiles": runs[0]["tiles"],
                "reference": "AnalogNAS NAS-Bench-201 analog table (CIFAR-10): median AVM 2.5 points for HWA-trained "
                "cells vs 31.5 for digitally trained ones; thesis §5.4: HWA T500 drops 1.8 points in a month",
                **(
                    {
                        "decomposition_over_seeds": {
                            c: {
                                n: {
                                    k: over_seeds([r["decomposition"][c] for r in runs], n, k)
                                    for k in ("acc_1s", "acc_30d", "avm")
                                }
                                for n in names
                            }
                            for c in CONDITIONS
                        }
                    }
                    if args.decompose
                    else {}
                ),  # fmt: skip
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
