r"""Measure computation reuse on real video frames: ``hwnas bench reuse`` (Treasure What You Have, Table 2).

:func:`benchmark_reuse` runs a network on the frames of a video, batch 1, at a fixed thread count, dense and with
reuse layers (:func:`~hwnas_pl.nn.reuse.to_reuse`), interleaved frame by frame after warm-up, and reports the
median milliseconds per frame of each, the speedup, the network compression ratio and MACs saved
(:class:`~hwnas_pl.nn.reuse.CompressionRatio`), the output NMSE :math:`\lVert y-\hat y\rVert^2/\lVert y\rVert^2`
against the dense output, and per layer: dense and reuse milliseconds (median), CR and the layer's own NMSE on the
dense network's input to it. Hashing, sorting, gathers and scatters are inside the reuse layer's timed region; the
dense baseline is torch's own layer. A timm model is built with random weights and its BatchNorm statistics are
recomputed on the video's frames (no download), so activations have realistic statistics.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas_pl.nn.reuse import CompressionRatio, ReuseLayer, reusable, set_reuse, to_reuse


def calibrate_batchnorm(model: nn.Module, frames: torch.Tensor) -> None:
    """Recompute every BatchNorm's running statistics as the plain average over ``frames`` (train-mode passes)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for i in range(0, len(frames), 8):
            model(frames[i : i + 8])
    model.eval()


class _LayerTimer:
    """Forward pre/post hooks timing each layer of ``layers`` (milliseconds per call)."""

    def __init__(self, layers: Mapping[str, nn.Module]) -> None:
        self.times: dict[str, list[float]] = {n: [] for n in layers}
        self._start: dict[str, float] = {}
        self.handles = []
        for name, layer in layers.items():
            self.handles.append(layer.register_forward_pre_hook(self._pre(name)))
            self.handles.append(layer.register_forward_hook(self._post(name)))

    def _pre(self, name):
        def hook(module, inputs):
            self._start[name] = time.perf_counter()

        return hook

    def _post(self, name):
        def hook(module, inputs, output):
            self.times[name].append(1000 * (time.perf_counter() - self._start[name]))

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def network_on_video(
    video: str | Path, model: str | nn.Module, height: int, width: int, frames: int, seed: int = 0
) -> tuple[nn.Module, str, torch.Tensor]:
    """(network in eval mode, its name, the clip) for measuring reuse on a video.

    The clip is the first ``frames`` frames, resized and standardised per channel; a timm model name is built with
    random weights (seeded) and its BatchNorm statistics are calibrated on the clip.
    """
    from hwnas_pl.datamodules.video import read_video

    clip = read_video(video, resize=(height, width), max_frames=frames).float() / 255.0
    clip = (clip - clip.mean(dim=(0, 2, 3), keepdim=True)) / clip.std(dim=(0, 2, 3), keepdim=True)
    if isinstance(model, str):
        import timm

        torch.manual_seed(seed)
        net, name = timm.create_model(model, pretrained=False), model
    else:
        net, name = model, type(model).__name__
    calibrate_batchnorm(net, clip)
    return net.eval(), name, clip


def output_nmse(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    """NMSE of ``y_hat`` against the reference ``y``: the squared error over the reference's energy, Σ(y - ŷ)² / Σy²."""
    return float(((y - y_hat) ** 2).sum() / (y**2).sum().clamp_min(1e-30))


def benchmark_reuse(
    video: str | Path,
    model: str | nn.Module = "resnet18",
    height: int = 224,
    width: int = 224,
    threads: int = 1,
    layers: dict[str, dict[str, int]] | None = None,
    default: dict[str, int] | None = None,
    skip: tuple[str, ...] = (),
    frames: int = 32,
    warmup: int = 3,
    seed: int = 0,
    reuse_frames: str = "intra",
) -> dict[str, Any]:
    """The measurement of the module docstring, as one JSON-ready dict.

    Args:
        video: the video file.
        model: a timm model name (random weights, BatchNorm calibrated on the frames) or a network.
        height: frame height after resizing.
        width: frame width after resizing.
        threads: torch CPU threads for both.
        layers: per-layer reuse settings (:func:`~hwnas_pl.nn.reuse.to_reuse`).
        default: settings of the layers ``layers`` does not name.
        skip: layers kept dense.
        frames: frames timed (the first ones after ``warmup``).
        warmup: frames run before timing.
        seed: of the model's weights and of the projections.
        reuse_frames: ``"intra"``, ``"inter"`` or ``"both"`` (:class:`~hwnas_pl.nn.reuse.ReuseLayer`): with the
            inter-frame modes each frame reuses the products of the one before it (the clip runs on from its
            first frame, warm-up included); the compression ratio then counts the products taken from the
            previous frame as saved.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net, name, clip = network_on_video(video, model, height, width, frames + warmup, seed)
        dense_layers = {n: m for n, m in net.named_modules() if reusable(m)}
        inputs: dict[str, tuple] = {}
        net, kept = to_reuse(net, layers, default if default is not None else {"input_dim": 16, "hash_size": 8},
                             skip, seed, reuse_frames)  # fmt: skip
        wrapping = {id(m.dense): m for m in net.modules() if isinstance(m, ReuseLayer)}
        reuse_layers = {n: wrapping[id(m)] for n, m in dense_layers.items() if id(m) in wrapping}  # original names
        timer = _LayerTimer({n: reuse_layers.get(n, m) for n, m in dense_layers.items()})
        metric = CompressionRatio()
        dense_ms, reuse_ms, nmse = [], [], []
        layer_ms: dict[str, dict[str, list[float]]] = {n: {"dense": [], "reuse": []} for n in dense_layers}
        layer_nmse: dict[str, list[float]] = {n: [] for n in reuse_layers}
        capture = {n: m.register_forward_pre_hook(lambda mod, a, k, n=n: inputs.__setitem__(n, (a, k)),
                                                  with_kwargs=True) for n, m in reuse_layers.items()}  # fmt: skip

        def timed(x: torch.Tensor, reuse: bool) -> tuple[torch.Tensor, float, dict[str, list[float]]]:
            """(output, milliseconds, per-layer milliseconds) of one frame, reuse on or off."""
            set_reuse(net, reuse)
            for v in timer.times.values():
                v.clear()
            t0 = time.perf_counter()
            out = net(x)
            return out, 1000 * (time.perf_counter() - t0), {n: list(v) for n, v in timer.times.items()}

        with torch.no_grad():
            for t in range(len(clip)):
                x = clip[t : t + 1]
                y, dense_time, dense_layer_times = timed(x, False)
                captured = {n: inputs[n] for n in reuse_layers}
                y_hat, reuse_time, reuse_layer_times = timed(x, True)
                if t < warmup:
                    continue
                dense_ms.append(dense_time)
                reuse_ms.append(reuse_time)
                nmse.append(output_nmse(y, y_hat))
                metric.update(net)
                for n in dense_layers:
                    layer_ms[n]["dense"] += dense_layer_times[n]
                    layer_ms[n]["reuse"] += reuse_layer_times[n]
                for n, layer in reuse_layers.items():  # the layer alone, on the dense network's input to it
                    args, kwargs = captured[n]
                    kept_state = (dict(layer.cache), layer.last, layer.last_macs)  # the network's own frame
                    layer.enabled = False
                    exact = layer(*args, **kwargs)
                    layer.enabled = True
                    layer_nmse[n].append(output_nmse(exact, layer(*args, **kwargs)))
                    layer.cache, layer.last, layer.last_macs = kept_state
        timer.remove()
        for h in capture.values():
            h.remove()
        totals = metric.compute()
        rows = []
        for n in dense_layers:
            d, r = float(np.median(layer_ms[n]["dense"])), float(np.median(layer_ms[n]["reuse"]))
            row = {"layer": n, "dense_ms": d, "reuse_ms": r, "speedup": d / r if r > 0 else None}
            if n in reuse_layers:
                row.update(cr=reuse_layers[n].compression_ratio, nmse=float(np.mean(layer_nmse[n])),
                           input_dim=reuse_layers[n].input_dim, hash_size=reuse_layers[n].hash_size)  # fmt: skip
            else:
                row["dense_because"] = kept[n]
            rows.append(row)
        dense_med, reuse_med = float(np.median(dense_ms)), float(np.median(reuse_ms))
        return {
            "video": str(video),
            "model": name,
            "frames": len(dense_ms),
            "input": [3, height, width],
            "threads": threads,
            "reuse_frames": reuse_frames,
            "dense_ms_per_frame": dense_med,
            "reuse_ms_per_frame": reuse_med,
            "speedup": dense_med / reuse_med,
            "compression_ratio": float(totals["compression_ratio"]),
            "macs_saved": float(totals["macs_saved"]),
            "macs_saved_fraction": float(totals["macs_saved_fraction"]),
            "output_nmse": float(np.mean(nmse)),
            "layers": rows,
        }
    finally:
        torch.set_num_threads(before)
