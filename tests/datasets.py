"""Tiny datasets written in their real on-disk formats, for tests. Later DataModules add their writers here."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_optdigits(path: str | Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write ``n`` rows in the UCI optdigits format (64 pixel counts in 0..16, then the class) to ``path``.

    Returns the (images ``(n, 8, 8)``, labels ``(n,)``) that were written.
    """
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 17, size=(n, 64))
    labels = np.arange(n) % 10
    rows = np.concatenate([pixels, labels[:, None]], axis=1)
    Path(path).write_text("\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    return pixels.reshape(n, 8, 8), labels


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """One IDX file of unsigned bytes (gzipped when ``path`` ends in ``.gz``): magic 00 00 08 ndim, big-endian dims."""
    import gzip

    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes() + array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb") as f:
        f.write(raw)
    return path


def write_mnist(root: str | Path, n_train: int = 40, n_test: int = 10, gz: bool = True) -> Path:
    """The four (Fashion-)MNIST IDX files, 28×28: image i is filled with the value ``i % 256``, label ``i % 10``."""
    root = Path(root)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 28, axis=1).repeat(28, axis=2)
        write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", np.arange(n) % 10)
    return root


def _pickle_dump(obj, path: Path) -> None:
    import pickle

    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: str | Path, per_batch: int = 12, n_test: int = 10, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/`` with five training batches, a test batch and batches.meta (byte keys, as the
    original Python 2 pickles). Image ``i`` of a batch has label ``i % 10`` and every pixel equal to ``i``."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [*[(f"data_batch_{b}", per_batch) for b in range(1, 6)], ("test_batch", n_test)]:
        data = np.repeat(np.arange(n, dtype=np.uint8)[:, None], 3072, axis=1)
        _pickle_dump(
            {b"batch_label": name.encode(), b"labels": [i % 10 for i in range(n)], b"data": data}, folder / name
        )
    _pickle_dump({b"label_names": [f"class{i}".encode() for i in range(10)]}, folder / "batches.meta")
    return folder


def write_cifar100(root: str | Path, n_train: int = 30, n_test: int = 10) -> Path:
    """``root/cifar-100-python/`` with train, test and meta; fine label ``i % 100``, coarse label ``i % 20``."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        data = np.repeat(np.arange(n, dtype=np.uint8)[:, None], 3072, axis=1)
        fine, coarse = [i % 100 for i in range(n)], [i % 20 for i in range(n)]
        _pickle_dump({b"fine_labels": fine, b"coarse_labels": coarse, b"data": data}, folder / name)
    _pickle_dump({b"fine_label_names": [], b"coarse_label_names": []}, folder / "meta")
    return folder


def write_imagenet16(root: str | Path, per_batch: int = 6, n_val: int = 8) -> Path:
    """The ten ``train_data_batch_*`` pickles and ``val_data`` (str keys, 1-based labels ``1 + i·37 % 200``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in [*[(f"train_data_batch_{b}", per_batch) for b in range(1, 11)], ("val_data", n_val)]:
        data = np.repeat(np.arange(n, dtype=np.uint8)[:, None], 768, axis=1)
        _pickle_dump({"data": data, "labels": [1 + (i * 37) % 200 for i in range(n)]}, root / name)
    return root


def write_image_folders(root: str | Path, classes: list[str], train_per_class: int = 4, val_per_class: int = 2) -> Path:
    """``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` of 20×24 RGB images."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{c}_{i}.JPEG", format="JPEG")
    return root


def write_troika(root: str | Path, bpm: dict[str, float], seconds: int = 30, test: dict[str, float] | None = None):
    """TROIKA ``.mat`` files: ``DATA_XX_TYPEYY.mat`` (6 rows at 125 Hz) with ``_BPMtrace.mat``, and optionally
    ``TEST_SXX_TYY.mat`` (5 rows) with ``True_SXX_TYY.mat``. Each recording's PPG is a sine at its constant heart
    rate ``bpm[name]``; the trace has one value per 8-s window every 2 s: ``(seconds − 8) / 2 + 1``."""
    from scipy import io as sio

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(seconds * 125) / 125
    n_windows = (seconds - 8) // 2 + 1

    def rows(rate: float, ecg: bool) -> np.ndarray:
        ppg = np.sin(2 * np.pi * rate / 60 * t)
        acc = 0.1 * np.cos(2 * np.pi * 0.3 * t)
        sig = [ppg, 0.8 * ppg, acc, acc, acc]
        return np.stack(([np.sin(2 * np.pi * rate / 60 * t)] if ecg else []) + sig)

    for name, rate in bpm.items():
        sio.savemat(root / f"{name}.mat", {"sig": rows(rate, True)})
        sio.savemat(root / f"{name}_BPMtrace.mat", {"BPM0": np.full((n_windows, 1), rate)})
    for name, rate in (test or {}).items():
        sio.savemat(root / f"{name}.mat", {"sig": rows(rate, False)})
        s, tt = name.split("_")[1:]
        sio.savemat(root / f"True_{s}_{tt}.mat", {"BPM0": np.full((n_windows, 1), rate)})
    return root


def write_apolloscape(
    root: str | Path,
    records: dict[str, int],
    road: str = "road02",
    cameras: tuple[str, ...] = ("Camera 5",),
    size: tuple[int, int] = (24, 32),
    scene: bool = False,
    palette: bool = False,
) -> list[str]:
    """ApolloScape frames in the published layout: ``records[name]`` frames per record and camera, 100 ms apart.

    Lane layout: ``ColorImage_<road>/ColorImage/...jpg`` and ``Labels_<road>/Label/..._bin.png``; scene layout:
    ``<road>_ins/ColorImage`` and ``<road>_ins/Label``. Labels: the left half is label id 200 (lane train id 1;
    scene: id 33 car, train id 1), the right half 0 (lane void 0; scene 'others', ignored), the top row 255
    (ignored). The frame's red channel encodes its index in the record (10·k). ``palette`` writes the labels as
    palette ("P") PNGs whose indices are the ids, as ApolloScape's official ground-truth sample is stored, with
    the lane colours of its table (id 200 s_w_d (220, 20, 60), 255 white). Returns the timestamps written.
    """
    from PIL import Image

    root = Path(root)
    img_dir = root / (f"{road}_ins" if scene else f"ColorImage_{road}") / "ColorImage"
    lab_dir = root / (f"{road}_ins" if scene else f"Labels_{road}") / "Label"
    h, w = size
    stamps = []
    for rec, n in records.items():
        for cam in cameras:
            for d in (img_dir, lab_dir):
                (d / rec / cam).mkdir(parents=True, exist_ok=True)
            for k in reversed(range(n)):  # written out of order: the DataModule must sort by timestamp
                ts = f"170927_0638{k // 10:02d}{(k % 10) * 100:03d}"
                stem = f"{ts}_{cam.replace(' ', '_')}"
                pixels = np.zeros((h, w, 3), dtype=np.uint8)
                pixels[..., 0] = 10 * k
                Image.fromarray(pixels).save(img_dir / rec / cam / f"{stem}.jpg", quality=95)
                label = np.zeros((h, w), dtype=np.uint8)
                label[:, : w // 2] = 33 if scene else 200
                label[0] = 255
                png = Image.fromarray(label)
                if palette:
                    colours = np.zeros((256, 3), dtype=np.uint8)
                    colours[200], colours[33], colours[255] = (220, 20, 60), (0, 0, 142), (255, 255, 255)
                    png = png.convert("P")  # indices = the ids, then the dataset's colours as the palette
                    png.putpalette(colours.flatten().tolist())
                png.save(lab_dir / rec / cam / f"{stem}_bin.png")
                stamps.append(ts)
    return stamps


def write_msd_task(root: str | Path, name: str = "Task09_Spleen", cases: int = 4, shape=(20, 20, 12), ct: bool = True):
    """A Decathlon task folder: ``dataset.json`` + ``imagesTr``/``labelsTr`` NIfTI volumes (1 mm voxels).

    Each case is background intensity −500 (CT) with a foreground cube of value 200 at voxels [6:14, 6:14, 3:9]
    labelled 1."""
    import json

    import nibabel as nib

    task = Path(root) / name
    (task / "imagesTr").mkdir(parents=True, exist_ok=True)
    (task / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for i in range(cases):
        img = np.full(shape, -500.0 if ct else 10.0, dtype=np.float32)
        lab = np.zeros(shape, dtype=np.uint8)
        img[6:14, 6:14, 3:9] = 200.0
        lab[6:14, 6:14, 3:9] = 1
        nib.save(nib.Nifti1Image(img, np.eye(4)), task / "imagesTr" / f"case_{i}.nii.gz")
        nib.save(nib.Nifti1Image(lab, np.eye(4)), task / "labelsTr" / f"case_{i}.nii.gz")
        training.append({"image": f"./imagesTr/case_{i}.nii.gz", "label": f"./labelsTr/case_{i}.nii.gz"})
    meta = {
        "name": name.split("_", 1)[-1],
        "modality": {"0": "CT" if ct else "MRI"},
        "labels": {"0": "background", "1": "organ"},
        "numTraining": cases,
        "training": training,
        "test": [],
    }
    (task / "dataset.json").write_text(json.dumps(meta, indent=1))
    return task


def write_hw_nas_bench(path: str | Path, arch_strings: list[str], seed: int = 0) -> dict:
    """A ``HW-NAS-Bench-v1_0.pickle`` in the published layout for the given NAS-Bench-201 cells (index = order):
    ``{"nasbench201": {dataset: {metric: [value per index], "config": [{"arch_str": ...}, ...]}}}``.

    Returns the metric values written (dataset -> metric -> array)."""
    import pickle

    rng = np.random.default_rng(seed)
    metrics = [  # the published file's names (HWNASBenchAPI.query_by_index), not the package's constant
        "edgegpu_latency", "edgegpu_energy", "raspi4_latency", "edgetpu_latency", "pixel3_latency",
        "eyeriss_latency", "eyeriss_energy", "eyeriss_arithmetic_intensity", "fpga_latency", "fpga_energy",
    ]  # fmt: skip
    values, data = {}, {"nasbench201": {}}
    for dataset in ("cifar10", "cifar100", "ImageNet16-120"):
        values[dataset] = {m: rng.uniform(0.5, 20.0, len(arch_strings)) for m in metrics}
        table = {m: [float(v) for v in values[dataset][m]] for m in metrics}
        table["config"] = [{"name": "infer.tiny", "C": 16, "N": 5, "arch_str": s, "num_classes": 10}
                           for s in arch_strings]  # fmt: skip
        data["nasbench201"][dataset] = table
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return values


def write_hw_nas_bench_fbnet(path: str | Path, seed: int = 0) -> dict:
    """A ``HW-NAS-Bench-v1_0.pickle`` whose ``fbnet`` half holds a lookup table per metric, ``{op_key: value}``,
    with every key ``fbnet_get_metrics`` can ask for (both datasets), written from the published geometry: stem 16,
    stages of (layers, channels) (1, 16) (4, 24) (4, 32) (4, 64) (4, 112) (4, 184) (1, 352), strides
    (1, 1, 2, 2, 1, 2, 1) with stem stride 1 and header 1504 on cifar100 (32x32), (1, 2, 2, 2, 1, 2, 1), 2 and 1984
    on ImageNet (224x224). Returns the tables written (metric -> key -> value)."""
    import pickle

    rng = np.random.default_rng(seed)
    blocks = [(1, 3, 1), (1, 3, 2), (3, 3, 1), (6, 3, 1), (1, 5, 1), (1, 5, 2), (3, 5, 1), (6, 5, 1)]
    stages = [(1, 16), (4, 24), (4, 32), (4, 64), (4, 112), (4, 184), (1, 352)]
    keys = []
    for size, stem_stride, strides, header, classes in ((32, 1, (1, 1, 2, 2, 1, 2, 1), 1504, 100),
                                                        (224, 2, (1, 2, 2, 2, 1, 2, 1), 1984, 1000)):  # fmt: skip
        keys.append(f"ConvNorm_H{size}_W{size}_Cin3_Cout16_kernel3_stride{stem_stride}_group1")
        h, c = size // stem_stride, 16
        for (n, c_out), stride in zip(stages, strides):
            for i in range(n):
                s = stride if i == 0 else 1
                keys += [f"ConvBlock_H{h}_W{h}_Cin{c}_Cout{c_out}_exp{e}_kernel{k}_stride{s}_group{g}"
                         for e, k, g in blocks]  # fmt: skip
                keys.append(f"Skip_H{h}_W{h}_Cin{c}_Cout{c_out}_stride{s}")
                h, c = h // s, c_out
        keys += [f"ConvNorm_H{h}_W{h}_Cin352_Cout{header}_kernel1_stride1_group1",
                 f"AvgP_H{h}_W{h}_Cin{header}_Cout{header}_kernel{h}_stride1",
                 f"FC_Cin{header}_Cout{classes}"]  # fmt: skip
    metrics = ["edgegpu_latency", "edgegpu_energy", "raspi4_latency", "pixel3_latency", "eyeriss_latency",
               "eyeriss_energy", "fpga_latency", "fpga_energy"]  # fmt: skip
    tables = {m: {k: float(rng.uniform(0.01, 2.0)) for k in keys} for m in metrics}
    with open(path, "wb") as f:
        pickle.dump({"fbnet": tables}, f)
    return tables


def write_fbnet_inputs(root: str | Path, n: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """What ``configs/hwprnas_fbnet.yaml`` reads: a CSV of ``n`` LHS-drawn FBNet (cifar) networks with an
    ``accuracy`` column (uniform 60-75) and HW-NAS-Bench's pickle with its FBNet lookup tables. Returns both paths."""
    from hwnas_pl.spaces import FBNetSpace

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_hw_nas_bench_fbnet(root / "HW-NAS-Bench-v1_0.pickle", seed)
    space, rng = FBNetSpace("cifar"), np.random.default_rng(seed)
    rows = [f"{space.to_string(a)},{rng.uniform(60, 75):.2f}" for a in space.sample(n, rng, method="lhs")]
    (root / "fbnet_cifar100_accuracy.csv").write_text("arch,accuracy\n" + "\n".join(rows) + "\n")
    return root / "fbnet_cifar100_accuracy.csv", root / "HW-NAS-Bench-v1_0.pickle"


def write_video(path: str | Path, frames: int, height: int = 32, width: int = 48, fps: int = 10) -> Path:
    """An mp4 (MPEG-4 part 2) of ``frames`` frames; frame ``t`` is filled with grey level ``20 + 40 * t`` (mod 256)."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            image = np.full((height, width, 3), (20 + 40 * t) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
