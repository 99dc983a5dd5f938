"""DataModules on tiny datasets written in their real formats (tests/datasets.py): values checked by hand."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from conftest import CONFIGS
from datasets import (
    write_apolloscape,
    write_cifar10,
    write_cifar100,
    write_image_folders,
    write_imagenet16,
    write_msd_task,
    write_troika,
)

from hwnas_pl.cli import cli_main
from hwnas_pl.datamodules import (
    ApolloScapeDataModule,
    CIFARDataModule,
    DatasetLayoutError,
    ImageNet16DataModule,
    ImageNetDataModule,
    MSDDataModule,
    TROIKADataModule,
)
from hwnas_pl.datamodules.apolloscape import label_lookup
from hwnas_pl.datamodules.cifar import CIFAR_MEAN, CIFAR_STD
from hwnas_pl.datamodules.image_arrays import Cutout
from hwnas_pl.datamodules.troika import bandpass
from hwnas_pl.errors import ConfigError
from hwnas_pl.modules.segmentation_module import SegmentationModule, segmentation_scores
from hwnas_pl.nn.segmentation import UNet

TROIKA_BPM = {"DATA_01_TYPE01": 70.0, "DATA_02_TYPE02": 90.0, "DATA_11_TYPE02": 100.0, "DATA_12_TYPE02": 120.0}


# ---------------------------------------------------------------------------------------------------- CIFAR
def test_cifar10_reads_the_python_batches_with_a_seeded_split(tmp_path):
    write_cifar10(tmp_path, per_batch=12, n_test=10)
    dm = CIFARDataModule(str(tmp_path), val_size=10, augment=False, batch_size=4, num_workers=0)
    dm.setup("fit")
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (50, 10, 10)
    assert dm.num_classes == 10 and dm.input_shape == (3, 32, 32)
    x, y = dm.data_test[7]  # test image 7: every pixel 7, label 7
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and int(y) == 7
    expected = [(7 / 255 - m) / s for m, s in zip(CIFAR_MEAN, CIFAR_STD)]
    assert x[:, 0, 0].tolist() == pytest.approx(expected, abs=1e-5)
    again = CIFARDataModule(str(tmp_path / "cifar-10-batches-py"), val_size=10, batch_size=4, num_workers=0)
    again.setup("fit")
    assert torch.equal(again.data_val.labels, dm.data_val.labels)  # same seed, same split; folder itself accepted


def test_cifar100_fine_and_coarse_labels_and_test_as_validation(tmp_path):
    write_cifar100(tmp_path, n_train=30, n_test=10)
    fine = CIFARDataModule(str(tmp_path), dataset="cifar100", val_size=0, batch_size=2, num_workers=0)
    coarse = CIFARDataModule(str(tmp_path), dataset="cifar100", labels="coarse", val_size=0, num_workers=0)
    fine.setup(), coarse.setup()
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert fine.data_val is fine.data_test and len(fine.data_train) == 30
    assert fine.data_train.labels[25].item() == 25 and coarse.data_train.labels[25].item() == 5
    # normalised with CIFAR-100's own statistics (NAS-Bench-201: mean (129.3, 124.1, 112.4), std (68.2, 65.4, 70.4))
    x, _ = fine.data_test[7]  # every pixel 7
    expected = [(7 - m) / s for m, s in zip((129.3, 124.1, 112.4), (68.2, 65.4, 70.4))]
    assert x[:, 0, 0].tolist() == pytest.approx(expected, abs=1e-5)


def test_training_augmentation_crops_flips_and_cuts_out(tmp_path):
    torch.manual_seed(0)
    img = torch.ones(3, 8, 8)
    out = Cutout(4)(img)
    assert out.sum() < img.sum() and (out == 0).sum() % 3 == 0 and (out == 0).sum() <= 3 * 16
    write_cifar10(tmp_path)
    dm = CIFARDataModule(str(tmp_path), val_size=5, cutout=16, batch_size=4, num_workers=0)
    dm.setup()
    zeros = [(dm.data_train[0][0] == 0).all(0).sum().item() for _ in range(10)]
    assert max(zeros) > 0  # padding of the random crop or the cutout square shows as exact zeros


# ---------------------------------------------------------------------------------------------------- ImageNet16
def test_imagenet16_keeps_the_first_120_classes_zero_based(tmp_path):
    write_imagenet16(tmp_path, per_batch=6, n_val=8)
    dm = ImageNet16DataModule(str(tmp_path), split="random", batch_size=2, num_workers=0)
    dm.setup()
    # labels 1 + 37i mod 200 for i = 0..5 -> 1, 38, 75, 112, 149, 186: four of them are <= 120
    assert len(dm.data_train) == 10 * 4 and sorted(set(dm.data_train.labels.tolist())) == [0, 37, 74, 111]
    # val labels for i = 0..7: 1, 38, 75, 112, 149, 186, 23, 60 -> six are <= 120, split in halves
    assert (len(dm.data_val), len(dm.data_test)) == (3, 3)
    assert dm.data_train[0][0].shape == (3, 16, 16) and dm.input_shape == (3, 16, 16)


def test_imagenet16_validation_and_test_are_nas_bench_201s_published_split(tmp_path):
    # 10,000 val images with labels 1 + 37i mod 200: exactly 6,000 (i = 0, 1, 2, 3, 6, ...) are in classes 1..120
    write_imagenet16(tmp_path, per_batch=2, n_val=10_000)
    dm = ImageNet16DataModule(str(tmp_path), batch_size=2, num_workers=0)
    dm.setup()
    assert (len(dm.data_val), len(dm.data_test)) == (3000, 3000)
    # x-valid starts at positions 1, 2, 3 (images i = 1, 2, 3: labels 38, 75, 112); x-test at 0, 4 (i = 0, 6)
    assert dm.data_val.labels[:3].tolist() == [37, 74, 111] and dm.data_test.labels[:2].tolist() == [0, 22]
    # AutoDL-Projects' own file format gives the same split
    from hwnas_pl.datamodules.imagenet16 import NB201_XVALID, read_nb201_split

    xvalid, xtest = read_nb201_split(NB201_XVALID, 6000)
    autodl = tmp_path / "imagenet-16-120-test-split.txt"
    lists = {"xvalid": xvalid, "xtest": xtest}
    autodl.write_text(json.dumps({k: ["int", [str(v) for v in idx]] for k, idx in lists.items()}))
    other = ImageNet16DataModule(str(tmp_path), split_file=str(autodl), num_workers=0)
    other.setup()
    assert torch.equal(other.data_test.labels, dm.data_test.labels)
    with pytest.raises(ConfigError, match="split 'nb201' is NAS-Bench-201's split of the 120-class set"):
        ImageNet16DataModule(str(tmp_path), num_classes=100)
    write_imagenet16(tmp_path, per_batch=2, n_val=8)
    with pytest.raises(DatasetLayoutError, match=r"splits positions 0..5999, but 6 validation images were loaded"):
        ImageNet16DataModule(str(tmp_path), num_workers=0).setup()


# ---------------------------------------------------------------------------------------------------- ImageNet
def test_imagenet_folders_with_a_class_and_image_subset(tmp_path):
    write_image_folders(tmp_path, ["n01", "n02", "n03"], train_per_class=4, val_per_class=2)
    dm = ImageNetDataModule(str(tmp_path), image_size=32, classes=2, images_per_class=3, batch_size=2, num_workers=0)
    dm.setup()
    assert dm.classes == ["n01", "n02"] and dm.num_classes == 2
    assert len(dm.data_train) == 6 and len(dm.data_val) == 4
    x, y = dm.data_val[3]
    assert x.shape == (3, 32, 32) and y == 1
    listed = ImageNetDataModule(str(tmp_path), image_size=32, classes=["n03"], num_workers=0)
    assert listed.num_classes == 1
    with pytest.raises(ConfigError, match=r"classes \['n09'\] have no folder"):
        ImageNetDataModule(str(tmp_path), classes=["n09"])


def test_corrupt_image_names_the_file(tmp_path):
    root = write_image_folders(tmp_path, ["n01"], train_per_class=1, val_per_class=1)
    bad = root / "val" / "n01" / "n01_0.JPEG"
    bad.write_bytes(b"not a jpeg")
    dm = ImageNetDataModule(str(root), image_size=32, num_workers=0)
    dm.setup()
    with pytest.raises(DatasetLayoutError, match=r"image '.*n01_0.JPEG' could not be decoded"):
        dm.data_val[0]


# ---------------------------------------------------------------------------------------------------- TROIKA
def test_troika_windows_align_with_the_bpm_trace(tmp_path):
    write_troika(tmp_path, TROIKA_BPM, seconds=30, test={"TEST_S01_T01": 60.0})
    dm = TROIKADataModule(str(tmp_path), batch_size=4)
    dm.setup()
    # 30 s at 125 Hz: (3750 - 1000) // 250 + 1 = 12 windows per recording, as many BPM values
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (24, 24, 12)
    assert dm.recordings["val"] == ["DATA_11_TYPE02", "DATA_12_TYPE02"]
    assert dm.recordings["test"] == ["TEST_S01_T01"] and dm.input_shape == (5, 1000)
    x, y = dm.data_train.tensors
    assert x.shape == (24, 5, 1000) and y.shape == (24, 1)
    assert y[:12].unique().tolist() == [70.0] and y[12:].unique().tolist() == [90.0]
    assert x.mean(-1).abs().max() < 1e-4 and x[:, :2].std(-1).mean() == pytest.approx(1.0, abs=0.01)
    # the PPG's dominant frequency is the recording's heart rate: 70 BPM = 1.1667 Hz
    spectrum = np.abs(np.fft.rfft(x[0, 0].numpy(), n=8000))
    assert np.fft.rfftfreq(8000, 1 / 125)[spectrum.argmax()] * 60 == pytest.approx(70.0, abs=1.0)
    held = TROIKADataModule(str(tmp_path), val_subjects=[11], test_subjects=[12], channels="ppg")
    held.setup()
    assert held.recordings["test"] == ["DATA_12_TYPE02"] and held.input_shape == (2, 1000)


def test_bandpass_keeps_the_heart_band_and_removes_drift():
    t = np.arange(60 * 125) / 125
    heart, drift, noise = np.sin(2 * np.pi * 1.5 * t), 3 * np.sin(2 * np.pi * 0.1 * t), np.sin(2 * np.pi * 20 * t)
    out = bandpass(np.stack([heart + drift + noise]), 0.4, 4.0, 4)[0]
    assert np.abs(out - heart)[1000:-1000].max() < 0.05  # 90 BPM kept; 0.1 Hz drift and 20 Hz removed


def test_troika_bad_files(tmp_path):
    from scipy import io as sio

    write_troika(tmp_path, {"DATA_01_TYPE01": 70.0, "DATA_02_TYPE02": 80.0})
    with pytest.raises(ConfigError, match=r"subjects \[7\] have no recording"):
        TROIKADataModule(str(tmp_path), val_subjects=[7]).setup()
    sio.savemat(tmp_path / "DATA_01_TYPE01.mat", {"signal": np.zeros((6, 10))})
    with pytest.raises(DatasetLayoutError, match=r"DATA_01_TYPE01.mat' has no variable 'sig'; it holds \['signal'\]"):
        TROIKADataModule(str(tmp_path), val_subjects=[2]).setup()
    sio.savemat(tmp_path / "DATA_01_TYPE01.mat", {"sig": np.zeros((6, 2000))})
    with pytest.raises(DatasetLayoutError, match=r"has 2000 samples \(5 windows.*but 12 BPM values"):
        TROIKADataModule(str(tmp_path), val_subjects=[2]).setup()
    (tmp_path / "DATA_02_TYPE02_BPMtrace.mat").unlink()
    with pytest.raises(DatasetLayoutError, match=r"expected the MATLAB file 'DATA_02_TYPE02_BPMtrace.mat'"):
        TROIKADataModule(str(tmp_path), val_subjects=[1]).setup()


# ---------------------------------------------------------------------------------------------------- ApolloScape
def test_apolloscape_label_tables():
    lane, scene = label_lookup("lane"), label_lookup("scene")
    assert (lane[0], lane[200], lane[204], lane[250], lane[249], lane[255], lane[17]) == (0, 1, 2, 35, 255, 255, 255)
    assert (scene[17], scene[33], scene[161], scene[113], scene[0], scene[98]) == (0, 1, 1, 21, 255, 255)


def test_apolloscape_frames_pairs_and_clips_in_time_order(tmp_path):
    stamps = write_apolloscape(tmp_path, {"Record001": 4, "Record002": 3}, cameras=("Camera 5", "Camera 6"))
    dm = ApolloScapeDataModule(
        str(tmp_path), image_size=(24, 32), frames="pairs", val_records=["Record002"], batch_size=2, num_workers=0
    )
    dm.setup()
    train = dm.data_train
    assert [f.timestamp for f in train.frames[:4]] == sorted(stamps[:4])  # written newest first, read in order
    assert len(train) == 2 * 3  # two cameras × three (t, t+1) pairs; no pair crosses a camera or record
    x, y = train[0]
    assert x.shape == (2, 3, 24, 32) and y.shape == (2, 24, 32) and y.dtype == torch.int64
    # red channel of frame k is 10k: the pair is frames 0 and 1 of Record001 / Camera 5
    red = x[:, 0] * 0.229 + 0.485
    assert red.mean((1, 2)).mul(255).round().tolist() == pytest.approx([0.0, 10.0], abs=2)
    assert y[0, 0].unique().tolist() == [255] and y[0, 5, :16].unique().tolist() == [1]
    assert y[0, 5, 16:].unique().tolist() == [0]
    assert len(dm.data_val) == 2 * 2
    clips = ApolloScapeDataModule(str(tmp_path), image_size=(24, 32), frames="clips", clip_length=3,
                                  val_records=["Record001"], num_workers=0)  # fmt: skip
    clips.setup()
    assert len(clips.data_val) == 2 and clips.data_val[0][0].shape == (3, 3, 24, 32)  # 4 frames -> one clip/camera


def test_apolloscape_palette_labels_keep_their_ids(tmp_path):
    """A palette PNG's pixel values are its indices = label ids (the official evaluator's np.array(Image.open))."""
    from PIL import Image

    write_apolloscape(tmp_path, {"Record001": 2, "Record002": 2}, palette=True)
    label = next(tmp_path.glob("Labels_road02/Label/Record001/*/*_bin.png"))
    with Image.open(label) as png:
        assert png.mode == "P" and np.asarray(png.convert("L"))[5, 0] != 200  # gray conversion would lose id 200
    dm = ApolloScapeDataModule(str(tmp_path), image_size=(24, 32), val_records=["Record002"], num_workers=0)
    dm.setup()
    _, y = dm.data_train[0]
    assert y[5, :16].unique().tolist() == [1] and y[5, 16:].unique().tolist() == [0] and y[0].unique().tolist() == [255]
    Image.fromarray(np.zeros((24, 32, 3), dtype=np.uint8)).save(label)  # a colour rendering instead of the ids
    with pytest.raises(DatasetLayoutError, match=r"label '.*_bin.png' is a RGB image; expected one channel of label"):
        dm.data_train[0]


def test_apolloscape_clips_stride_within_each_sequence(tmp_path):
    """Clips start every clip_length frames from each sequence's own first frame; no sequence is lost."""
    from hwnas_pl.datamodules.apolloscape import item_starts

    # sequences of 4 and 3 frames, clip_length 3: starts 0 and 4 (a stride over all valid starts gave only 0)
    assert item_starts(["a"] * 4 + ["b"] * 3, 3, 3) == [0, 4]
    assert item_starts(["a"] * 7 + ["b"] * 2, 3, 3) == [0, 3]
    assert item_starts(["a"] * 3 + ["b"] * 3, 2, 1) == [0, 1, 3, 4]
    write_apolloscape(tmp_path, {"Record001": 4, "Record002": 3, "Record003": 2})
    dm = ApolloScapeDataModule(str(tmp_path), image_size=(24, 32), frames="clips", clip_length=3,
                               val_records=["Record001", "Record002"], num_workers=0)  # fmt: skip
    dm.setup()
    assert len(dm.data_val) == 2
    red = dm.data_val[1][0][:, 0] * 0.229 + 0.485  # the second clip is frames 0, 1, 2 of Record002
    assert red.mean((1, 2)).mul(255).round().tolist() == pytest.approx([0.0, 10.0, 20.0], abs=2)


def test_apolloscape_scene_layout_crop_and_bad_input(tmp_path):
    write_apolloscape(tmp_path, {"Record057": 2, "Record058": 2}, road="road01", scene=True)
    dm = ApolloScapeDataModule(str(tmp_path), task="scene", image_size=(24, 32), crop_size=(16, 16), num_workers=0)
    dm.setup()
    assert dm.num_classes == 22 and dm.input_shape == (3, 16, 16) and len(dm.data_train) + len(dm.data_val) == 4
    x, y = dm.data_train[0]
    assert x.shape == (3, 16, 16) and set(y.unique().tolist()) <= {1, 255}  # car, or ignored (others, row 0)
    label = next(tmp_path.glob("road01_ins/Label/Record057/*/*_bin.png"))
    from PIL import Image

    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(label)
    with pytest.raises(DatasetLayoutError, match=r"label '.*_bin.png' is 10×10 but its frame .* is 32×24"):
        ApolloScapeDataModule(str(tmp_path), task="scene", num_workers=0).setup()
    label.unlink()
    with pytest.raises(DatasetLayoutError, match=r"has no label; expected '.*Record057.*_bin.png'"):
        ApolloScapeDataModule(str(tmp_path), task="scene", num_workers=0).setup()
    with pytest.raises(DatasetLayoutError, match=r"holds no frames; expected \{type\}_\{road id\}"):
        ApolloScapeDataModule(str(tmp_path / "road01_ins" / "Label")).setup()


# ---------------------------------------------------------------------------------------------------- MSD
def test_msd_patches_slices_and_intensity_scaling(tmp_path):
    task = write_msd_task(tmp_path, cases=4)
    dm = MSDDataModule(str(task), patch_size=(8, 8, 8), spacing=None, samples_per_volume=2, batch_size=2,
                       num_workers=0, pos=1.0, neg=0.0)  # fmt: skip
    dm.setup()
    assert dm.num_classes == 2 and dm.input_shape == (1, 8, 8, 8)
    assert (len(dm.data_train), len(dm.data_val)) == (3, 1)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 8, 8, 8) and batch["label"].shape == (4, 1, 8, 8, 8)
    # CT window [-175, 250] -> [0, 1]: background -500 -> 0, organ 200 -> 375/425
    values = batch["image"].unique().double()
    assert torch.minimum(values.abs(), (values - 375 / 425).abs()).max() < 1e-5
    assert (batch["label"].flatten(1).sum(1) > 0).all()  # pos=1, neg=0: every patch centred on the organ
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (1, 1, 20, 20, 12)
    slices = MSDDataModule(str(task), mode="2d", patch_size=(8, 8, 1), spacing=None, samples_per_volume=3,
                           batch_size=1, num_workers=0)  # fmt: skip
    slices.setup()
    assert next(iter(slices.train_dataloader()))["image"].shape == (3, 1, 8, 8) and slices.input_shape == (1, 8, 8)


def test_msd_bad_task_folders(tmp_path):
    task = write_msd_task(tmp_path, cases=2)
    meta = json.loads((task / "dataset.json").read_text())
    meta["training"][1]["label"] = "./labelsTr/missing.nii.gz"
    (task / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetLayoutError, match=r"names label './labelsTr/missing.nii.gz', but '.*' does not exist"):
        MSDDataModule(str(task))
    (task / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetLayoutError, match=r"dataset.json' is not valid JSON"):
        MSDDataModule(str(task))
    task = write_msd_task(tmp_path, name="Task04_Hippocampus", cases=2, ct=False)
    (task / "imagesTr" / "case_0.nii.gz").write_bytes(b"corrupt")
    with pytest.raises(DatasetLayoutError, match=r"image '.*case_0.nii.gz' is not a readable NIfTI file"):
        MSDDataModule(str(task), spacing=None, num_workers=0).setup()
    with pytest.raises(DatasetLayoutError, match=r"expected the task description dataset.json"):
        MSDDataModule(str(tmp_path))


# ---------------------------------------------------------------------------------------------------- segmentation
def test_segmentation_scores_by_hand():
    # rows (tp, fp, tn, fn, support) of classes 0, 1, 2; class 2 never seen
    stats = torch.tensor([[6, 2, 0, 1, 7], [3, 1, 0, 2, 5], [0, 0, 12, 0, 0]])
    s = segmentation_scores(stats)
    assert s["miou"].item() == pytest.approx((6 / 9 + 3 / 6) / 2)
    assert s["f1"].item() == s["dice"].item() == pytest.approx(6 / 9)  # 2·3 / (6 + 1 + 2), foreground only
    assert s["pixel_acc"].item() == pytest.approx(9 / 12)


def test_segmentation_module_slice_wise_inference_of_volumes():
    module = SegmentationModule(functools.partial(UNet, channels=(4, 8), strides=(2,)), 2, (1, 8, 8))
    volume = torch.randn(1, 1, 8, 8, 5)
    out = module.infer(volume)
    assert out.shape == (1, 2, 8, 8, 5)
    module.eval()
    assert torch.allclose(module.infer(volume)[..., 3], module.net(volume[..., 3]), atol=1e-5)
    # prediction batches carry no labels: a MONAI dict with only the image, or a bare image tensor
    assert module.predict_step({"image": volume}, 0).shape == (1, 8, 8, 5)
    assert module.predict_step(torch.randn(2, 1, 8, 8), 0).shape == (2, 8, 8)


# ---------------------------------------------------------------------------------------------------- hwnas fit
FIT = ["--trainer.fast_dev_run", "true", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "writer", "overrides"),
    [
        ("cifar10_classifier.yaml", lambda p: write_cifar10(p), ["--data.init_args.val_size", "10"]),
        ("analog_hwa_cifar10.yaml", lambda p: write_cifar10(p),
         ["--data.init_args.val_size", "4", "--trainer.callbacks.init_args.trials", "1"]),
        ("cifar100_classifier.yaml", lambda p: write_cifar100(p), ["--data.init_args.val_size", "10"]),
        ("imagenet16_classifier.yaml", lambda p: write_imagenet16(p), ["--data.init_args.split", "random"]),
        ("imagenet_classifier.yaml", lambda p: write_image_folders(p, ["n01", "n02"]),
         ["--data.init_args.classes", "null", "--data.init_args.image_size", "64",
          "--data.init_args.pin_memory", "false"]),
        ("troika_heart_rate.yaml", lambda p: write_troika(p, TROIKA_BPM), []),
        ("apolloscape_lane_segmentation.yaml", lambda p: write_apolloscape(p, {"Record001": 3, "Record002": 2}),
         ["--data.init_args.image_size", "[64, 64]", "--data.init_args.crop_size", "[32, 32]",
          "--data.init_args.frames", "pairs"]),
        ("apolloscape_scene_parsing.yaml", lambda p: write_apolloscape(p, {"R1": 2, "R2": 2}, scene=True),
         ["--data.init_args.image_size", "[64, 64]", "--data.init_args.crop_size", "null"]),
        ("msd_segmentation.yaml", lambda p: write_msd_task(p),
         ["--data.init_args.patch_size", "[16, 16, 8]", "--data.init_args.spacing", "null",
          "--model.init_args.backbone.init_args.channels", "[4, 8]", "--model.init_args.backbone.init_args.strides",
          "[2]", "--model.init_args.backbone.init_args.num_res_units", "1"]),
    ],
)  # fmt: skip
def test_each_experiment_config_fits_its_fixture(tmp_path, config, writer, overrides):
    writer(tmp_path / "data")
    data_dir = tmp_path / "data" / ("Task09_Spleen" if config.startswith("msd") else "")
    args = ["fit", "--config", str(CONFIGS / config), "--data.init_args.data_dir", str(data_dir),
            "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2", *FIT, *overrides]  # fmt: skip
    cli_main(args)


@pytest.mark.slow
def test_corrupt_image_in_a_worker_ends_with_one_sentence(tmp_path, capsys):
    root = write_image_folders(tmp_path / "data", ["n01", "n02"], train_per_class=2, val_per_class=1)
    (root / "train" / "n02" / "n02_1.JPEG").write_bytes(b"truncated")
    args = ["fit", "--config", str(CONFIGS / "imagenet_classifier.yaml"), "--data.init_args.data_dir", str(root),
            "--data.init_args.num_workers", "1", "--data.init_args.batch_size", "4", "--data.init_args.classes",
            "null", "--data.init_args.image_size", "32", "--data.init_args.pin_memory", "false", *FIT]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hwnas: error: ImageNet image '") and err.endswith("expected a JPEG/PNG.")
    assert "n02_1.JPEG' could not be decoded" in err and "Traceback" not in err


@pytest.mark.ddp
@pytest.mark.slow
def test_prepare_data_runs_on_rank_zero_only_under_ddp(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from conftest import hwnas_env

    write_cifar10(tmp_path / "data")
    records = tmp_path / "records"
    cmd = [
        str(Path(sys.executable).parent / "hwnas"), "fit", "--config", str(CONFIGS / "cifar10_classifier.yaml"),
        "--trainer", str(CONFIGS / "trainer" / "ddp.yaml"), "--trainer.accelerator", "cpu", "--trainer.devices", "2",
        "--data", "rank_prepare.RecordingCIFAR", f"--data.record_dir={records}",
        f"--data.data_dir={tmp_path / 'data'}", "--data.val_size=10", "--data.batch_size=4", "--data.num_workers=0",
        "--model.init_args.backbone=small_cnn", *FIT,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=hwnas_env(), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name.split("_pid")[0] for p in records.iterdir())
    assert names == ["prepare_rank0", "setup_rank0", "setup_rank1"]
    assert {p.read_text() for p in records.glob("setup_*")} == {"2"}  # global batch 4 split over 2 processes
