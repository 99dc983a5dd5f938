"""PRP-NAS (thesis §3.3) measured: step cost, α-update overhead, ranking quality and the exported front.

Prints one JSON object with:

- ``step_ratio``: supernet search step (argmax path: forward, backward, SGD step) ÷ the step of the standalone
  argmax child network, same batch, interleaved in one run; NAS-Bench-201 C=16 N=5 on a 64×3×32×32 batch
  (target ≤ 1.2).
- ``alpha_overhead``: one :class:`ParetoRankAlphaUpdate` update with n = 50 as a share of an epoch, measured in
  the digits runs below, and for a CIFAR-10 epoch (390 steps of batch 128, C=16 N=5; update on 2 held-out batches
  of 128, as in configs/prpnas_nb201_cifar10.yaml) from measured step and update times (target ≤ 10 %).
- ``ranking``: the digits config's supernet trained with α updates (search path argmax(α), or sampled from
  softmax(α)) and without (FairNAS warm-up, then paths sampled uniformly). No pruning here, so that every run can
  rank the same sub-networks (pruning is exercised by the tests and the config). ``samples`` sub-networks are
  ranked by their shared-weight accuracy and compared with the accuracy of the same sub-networks trained independently
  (``seeds`` seeds averaged, test split): Kendall tau-b of accuracy, and of the Pareto rank with latency from the
  LUT (target ≥ 0.7). ``seed_tau`` is the tau between two independent-training seeds: the ceiling that label
  noise leaves on digits.
- ``hypervolume``: HV, with independently trained accuracies, of the sub-networks the supernet puts on its Pareto
  front, divided by the HV of the true front of the same sample (1.0: the supernet found the real front).

    python benchmarks/prpnas.py                 # about 10 minutes on 2 CPU cores
    python benchmarks/prpnas.py --samples 12 --seeds 2 --epochs 12   # quicker
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from hwnas_pl.callbacks import ParetoRankAlphaUpdate
from hwnas_pl.datamodules import DigitsDataModule
from hwnas_pl.evaluators.lut import LatencyLUT
from hwnas_pl.modules import SupernetModule
from hwnas_pl.pareto import hypervolume, kendall_tau, nadir_reference_point, pareto_ranks
from hwnas_pl.spaces import NASBench201Space

DIRECTIONS = ("max", "min")


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_ratio(repeats: int) -> dict:
    """Supernet argmax-path step vs standalone child step, interleaved on the same batch."""
    space = NASBench201Space(channels=16, cells=5)
    lut = lambda s, **kw: LatencyLUT(s, warmup=1, repeats=2, **kw)  # noqa: E731 - costs are not timed here
    module = SupernetModule(space, 10, (3, 32, 32), warmup_epochs=0, cost_model=lut)
    with torch.no_grad():
        module.alpha[:, 3] = 1.0  # nor_conv_3x3 on every edge: the heaviest cell
    ops = module.ops_of(module.argmax_path())
    child = space.build(ops, 10, (3, 32, 32))
    child.load_state_dict(module.supernet.child_state_dict(ops))
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    sgd_super = torch.optim.SGD(module.supernet.parameters(), lr=0.01, momentum=0.9)
    sgd_child = torch.optim.SGD(child.parameters(), lr=0.01, momentum=0.9)

    def super_step():
        sgd_super.zero_grad(set_to_none=True)
        F.cross_entropy(module.supernet(x, ops), y).backward()
        sgd_super.step()

    def child_step():
        sgd_child.zero_grad(set_to_none=True)
        F.cross_entropy(child(x), y).backward()
        sgd_child.step()

    for _ in range(2):
        super_step(), child_step()
    s, c = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        s.append(_median_time(super_step, 1))
        c.append(_median_time(child_step, 1))
    return {
        "supernet_step_s": statistics.median(s),
        "child_step_s": statistics.median(c),
        "ratio": statistics.median(s) / statistics.median(c),
        "supernet_params": sum(p.numel() for p in module.supernet.parameters()),
        "child_params": sum(p.numel() for p in child.parameters()),
    }


def cifar_alpha_overhead(repeats: int, num_batches: int) -> dict:
    """One α update (n = 50, ``num_batches`` held-out batches of 128) vs 390 search steps of batch 128, C=16 N=5."""
    space = NASBench201Space(channels=16, cells=5)
    module = SupernetModule(
        space, 10, (3, 32, 32), warmup_epochs=0, cost_model=lambda s, **kw: LatencyLUT(s, warmup=1, repeats=3, **kw)
    )
    update = ParetoRankAlphaUpdate(n=50, top_n=10, num_batches=num_batches)
    update.optimizer = torch.optim.Adam([module.alpha], lr=0.05, betas=(0.5, 0.999))
    batches = [(torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))) for _ in range(num_batches)]
    module._heldout, module._heldout_asked = batches, num_batches  # random data: only the time counts
    module.check_cost_model()  # measure the LUT once, outside the timing (a one-off per machine)
    module.costs(module.sample_subnets(500, np.random.default_rng(0)))  # and price the space's sub-networks

    class _Trainer:  # what update() reads from the trainer
        world_size, global_step, current_epoch = 1, 0, 0

    module.log_dict = lambda *a, **k: None
    t_update = _median_time(lambda: update.update(_Trainer(), module), 1)  # minutes on a CPU: once
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    sgd = torch.optim.SGD(module.supernet.parameters(), lr=0.01, momentum=0.9)
    paths = module.sample_subnets(repeats, np.random.default_rng(1))  # the search phase's paths vary: average them

    def step(ops):
        sgd.zero_grad(set_to_none=True)
        F.cross_entropy(module.supernet(x, ops), y).backward()
        sgd.step()

    step(module.ops_of(paths[0]))
    t_step = statistics.mean(_median_time(lambda p=p: step(module.ops_of(p)), 1) for p in paths)
    epoch = 390 * t_step
    return {"update_s": t_update, "step_s": t_step, "epoch_s": epoch, "share": t_update / (epoch + t_update)}


class TimedAlphaUpdate(ParetoRankAlphaUpdate):
    """Records how long each update takes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds: list[float] = []

    def update(self, trainer, module):
        start = time.perf_counter()
        out = super().update(trainer, module)
        self.seconds.append(time.perf_counter() - start)
        return out


class EpochTimer(L.Callback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):  # runs after the α update of that epoch (callback order)
        self.seconds.append(time.perf_counter() - self._start)


def train_supernet(space, lut_path, with_alpha: bool, path: str, epochs: int, warmup: int) -> tuple:
    L.seed_everything(42, verbose=False)
    lut = lambda s, **kw: LatencyLUT(s, path=lut_path, threads=1, warmup=5, repeats=30, **kw)  # noqa: E731
    module = SupernetModule(
        space,
        10,
        (1, 8, 8),
        warmup_epochs=warmup,
        path=path,
        cost_model=lut,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=3e-4),
        scheduler=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, epochs),
    )
    update = TimedAlphaUpdate(n=50, top_n=10, margin=0.1, num_batches=2)
    timer = EpochTimer()
    callbacks = [update, timer] if with_alpha else []  # no pruning: every run can rank the same sub-networks
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=callbacks,
    )
    trainer.fit(module, DigitsDataModule(batch_size=64, seed=42))
    return module, update, timer


def train_independently(space, arch, data, epochs: int, seed: int) -> float:
    (xtr, ytr), (xte, yte) = data
    torch.manual_seed(seed)
    net = space.build(arch, 10, (1, 8, 8))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    steps_per_epoch = (len(ytr) + 63) // 64
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(ytr), generator=generator)
        for i in range(0, len(ytr), 64):
            idx = perm[i : i + 64]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xtr[idx]), ytr[idx]).backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        return float((net(xte).argmax(1) == yte).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=30, help="sub-networks ranked")
    parser.add_argument("--seeds", type=int, default=3, help="independent trainings per sub-network")
    parser.add_argument("--epochs", type=int, default=30, help="supernet epochs (N_f + N_p)")
    parser.add_argument("--warmup", type=int, default=10, help="N_f")
    parser.add_argument("--child_epochs", type=int, default=6, help="epochs of each independent training")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"step_ratio": step_ratio(args.repeats)}
    cifar = cifar_alpha_overhead(max(3, args.repeats // 2), num_batches=2)

    space = NASBench201Space(channels=8, cells=1)  # configs/prpnas_nb201_digits.yaml
    lut_path = Path(tempfile.mkdtemp()) / "lut.json"
    runs = {}
    start = time.perf_counter()
    runs["alpha_argmax_path"] = train_supernet(space, lut_path, True, "argmax", args.epochs, args.warmup)
    runs["alpha_sampled_path"] = train_supernet(space, lut_path, True, "sample", args.epochs, args.warmup)
    runs["without_alpha"] = train_supernet(space, lut_path, False, "sample", args.epochs, args.warmup)
    supernet_seconds = time.perf_counter() - start
    module, update, timer = runs["alpha_argmax_path"]
    search_epochs = timer.seconds[args.warmup :]
    result["alpha_overhead"] = {
        "digits": {
            "update_s": statistics.median(update.seconds),
            "epoch_s": statistics.median(search_epochs),
            "share": statistics.median(update.seconds) / statistics.median(search_epochs),
        },
        "cifar10_extrapolated": cifar,
    }

    dm = DigitsDataModule(batch_size=64, seed=42)
    dm.setup("fit")
    data = (dm.data_train.tensors, dm.data_test.tensors)
    rng = np.random.default_rng(7)
    paths = module.sample_subnets(args.samples, rng)
    archs = [space.decode(p) for p in paths]
    latency = module.costs(paths)
    start = time.perf_counter()
    true = np.array(
        [[train_independently(space, a, data, args.child_epochs, s) for s in range(args.seeds)] for a in archs]
    )
    independent_seconds = time.perf_counter() - start
    true_acc = true.mean(axis=1)
    true_ranks = pareto_ranks(np.stack([true_acc, latency], 1), DIRECTIONS)
    ref = nadir_reference_point(np.stack([true_acc, latency], 1), DIRECTIONS, margin=0.1)
    true_front_hv = hypervolume(np.stack([true_acc, latency], 1)[true_ranks == 1], ref, DIRECTIONS)
    ranking, hv = {}, {}
    for name, (net, _, _) in runs.items():
        est = net.estimate_accuracy(paths, [dm.data_val.tensors])  # the whole validation split, one batch
        est_ranks = pareto_ranks(np.stack([est, latency], 1), DIRECTIONS)
        ranking[name] = {
            "kendall_tau_accuracy": kendall_tau(est, true_acc),
            "kendall_tau_pareto_rank": kendall_tau(est_ranks, true_ranks),
        }
        chosen = np.stack([true_acc, latency], 1)[est_ranks == 1]
        hv[name] = {
            "front_size": int((est_ranks == 1).sum()),
            "hv_ratio_to_true_front": hypervolume(chosen, ref, DIRECTIONS) / true_front_hv,
        }
    seed_tau = kendall_tau(true[:, 0], true[:, 1]) if args.seeds > 1 else None
    result["ranking"] = {
        **ranking,
        "samples": args.samples,
        "seeds": args.seeds,
        "child_epochs": args.child_epochs,
        "seed_tau": seed_tau,
        "true_acc_range": [float(true_acc.min()), float(true_acc.max())],
    }
    result["hypervolume"] = hv
    result["seconds"] = {"supernets": supernet_seconds, "independent_training": independent_seconds}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
