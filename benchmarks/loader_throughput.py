"""Data-loader throughput vs the training step rate of a ResNet-18 on the same machine (issue: DataModules).

Writes a CIFAR-10 copy in the official python format (``--cifar-images`` per batch file) and ApolloScape frames of
the dataset's size (3384×2710 JPEG + PNG label) into a temporary folder, then measures in one run:

- samples/s of each DataModule's training loader with ``--workers`` workers (decode, resize, augment, collate);
- samples/s of ResNet-18 (timm, random init) training steps on the loader's batches: a classifier at 32×32 for
  CIFAR, the FPN segmentation network at the ApolloScape training size.

``loader_to_train_ratio`` > 1 means the loader keeps ahead of training. Prints one JSON object.

    python benchmarks/loader_throughput.py --workers 2
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from datasets import write_apolloscape, write_cifar10  # noqa: E402

from hwnas_pl.datamodules import ApolloScapeDataModule, CIFARDataModule  # noqa: E402
from hwnas_pl.models import create_backbone  # noqa: E402
from hwnas_pl.nn.segmentation import TimmFPN  # noqa: E402


def loader_rate(loader, batches):
    it = iter(loader)
    next(it)  # workers started, first batch out
    n, start = 0, time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
        n += x.shape[0]
    return n / (time.perf_counter() - start)


def train_rate(net, batch, steps, loss_fn):
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()
    x, y = batch
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    return steps * x.shape[0] / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cifar-images", type=int, default=2000, help="images per CIFAR batch file (5 files)")
    p.add_argument("--frames", type=int, default=24, help="ApolloScape frames written")
    p.add_argument("--apollo-size", type=int, nargs=2, default=[512, 640], help="training resize (H W)")
    p.add_argument("--apollo-batch", type=int, default=4)
    args = p.parse_args()
    torch.manual_seed(0)
    out = {"workers": args.workers, "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_cifar10(tmp / "cifar", per_batch=args.cifar_images, n_test=10)
        dm = CIFARDataModule(str(tmp / "cifar"), val_size=0, cutout=16, batch_size=128, num_workers=args.workers)
        dm.setup()
        cifar_loader = loader_rate(dm.train_dataloader(), batches=min(30, len(dm.train_dataloader()) - 1))
        batch = next(iter(dm.train_dataloader()))
        net = create_backbone("resnet18", 10, (3, 32, 32))
        cifar_train = train_rate(net, batch, 5, F.cross_entropy)
        out["cifar"] = {
            "loader_samples_per_s": round(cifar_loader, 1),
            "resnet18_train_samples_per_s": round(cifar_train, 1),
            "loader_to_train_ratio": round(cifar_loader / cifar_train, 2),
        }

        write_apolloscape(tmp / "apollo", {"Record001": args.frames}, size=(2710, 3384))
        dm = ApolloScapeDataModule(str(tmp / "apollo"), image_size=tuple(args.apollo_size), val_fraction=0.0,
                                   batch_size=args.apollo_batch, num_workers=args.workers)  # fmt: skip
        dm.setup()
        apollo_loader = loader_rate(dm.train_dataloader(), batches=len(dm.train_dataloader()) - 1)
        batch = next(iter(dm.train_dataloader()))
        net = TimmFPN(36, (3, *args.apollo_size), encoder="resnet18")
        apollo_train = train_rate(net, batch, 3, lambda o, y: F.cross_entropy(o, y, ignore_index=255))
        out["apolloscape_3384x2710_to_" + "x".join(map(str, args.apollo_size))] = {
            "loader_samples_per_s": round(apollo_loader, 2),
            "resnet18_fpn_train_samples_per_s": round(apollo_train, 2),
            "loader_to_train_ratio": round(apollo_loader / apollo_train, 2),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
