"""SA-training as a user runs it: a pre-trained CNN fine-tuned with reuse in the loop and Eq. 1 from a config
(``hwnas fit``), on tiny Fashion-MNIST IDX files; the weights it starts from (``LoadWeights``)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, hwnas_env
from torch import nn

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.nn import LoadWeights

HWNAS = str(Path(sys.executable).parent / "hwnas")


def test_load_weights_from_a_checkpoint_or_a_state_dict(tmp_path):
    torch.manual_seed(0)
    trained = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    trained[1].running_mean.fill_(0.5)
    state = trained.state_dict()
    torch.save({"state_dict": {f"net.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "m.ckpt")
    torch.save(state, tmp_path / "plain.pt")
    for path in ("m.ckpt", "plain.pt"):
        fresh = LoadWeights(str(tmp_path / path)).apply(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))
        assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    shapes = (
        r"does not fit Sequential: 6 tensors of other shapes \(e.g. '0.weight': \(2, 1, 3, 3\) in the checkpoint, "
        r"\(4, 1, 3, 3\) in the model\)"
    )
    with pytest.raises(UserInputError, match=shapes):
        LoadWeights(str(tmp_path / "m.ckpt")).apply(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))
    with pytest.raises(UserInputError, match=r"2 tensors of the model missing \(e.g. '2.weight'\)"):
        LoadWeights(str(tmp_path / "plain.pt")).apply(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2),
                                                                    nn.Linear(2, 2)))  # fmt: skip
    with pytest.raises(UserInputError, match="LoadWeights path '.*nothing.ckpt' does not exist"):
        LoadWeights(str(tmp_path / "nothing.ckpt")).apply(trained)


def _fit(*args, cwd):
    proc = subprocess.run([HWNAS, "fit", *args, "--trainer.enable_progress_bar", "false"], cwd=cwd, env=hwnas_env(),
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_sa_training_config_fine_tunes_the_pretrained_cnn_with_reuse_and_eq1(tmp_path):
    from datasets import write_mnist
    from wandb_reader import read_wandb_history

    data = write_mnist(tmp_path / "fmnist", n_train=160, n_test=20)
    small = ["--data.init_args.data_dir", str(data), "--data.init_args.val_size", "40", "--trainer.max_epochs", "1"]
    _fit("--config", str(CONFIGS / "fashionmnist_cnn.yaml"), *small, "--data.init_args.batch_size", "40", cwd=tmp_path)
    pretrained = torch.load(tmp_path / "outputs" / "pretrained" / "fashionmnist_cnn.ckpt", weights_only=True)
    _fit("--config", str(CONFIGS / "sa_training_fashionmnist.yaml"), *small, "--data.init_args.train_size", "null",
         "--data.init_args.batch_size", "20", cwd=tmp_path)  # fmt: skip
    run = tmp_path / "logs" / "sa_training_fashionmnist"
    ckpt = torch.load(next(run.rglob("last.ckpt")), weights_only=True)
    state = ckpt["state_dict"]
    # every 3x3 convolution ran on centroids (the wrapped layer's weights), started from the pre-trained ones
    assert [k for k in state if k.endswith("dense.weight")] == [f"net.features.{i}.dense.weight" for i in (0, 3, 7, 10)]
    assert "net.classifier.weight" in state and not torch.equal(
        state["net.features.0.dense.weight"], torch.zeros_like(state["net.features.0.dense.weight"])
    )
    assert state["net.features.0.dense.weight"].shape == pretrained["state_dict"]["net.features.0.weight"].shape
    # Eq. 1's running mean of each ReLU map is in the checkpoint: 120 training images seen
    assert state["loss_terms.intra_frame_similarity.mean_0"].shape == (32, 28, 28)
    assert float(state["loss_terms.intra_frame_similarity.samples"]) == 120
    history = read_wandb_history(next(run.rglob("run-*.wandb")).parent)
    values = [h["train/intra_frame_similarity"] for h in history if "train/intra_frame_similarity" in h]
    assert values and all(v >= 0 for v in values)


@pytest.mark.slow
def test_label_free_distillation_config_on_unlabelled_video(tmp_path):
    from datasets import write_video

    (tmp_path / "videos").mkdir()
    video = write_video(tmp_path / "videos" / "cam.mp4", 6, 32, 32)
    _fit("--config", str(CONFIGS / "sa_distillation_video.yaml"), "--data.init_args.data_dir", str(video.parent),
         "--data.init_args.resize", "[32, 32]", "--model.init_args.input_shape", "[3, 32, 32]",
         "--trainer.max_epochs", "1", "--data.init_args.batch_size", "2", cwd=tmp_path)  # fmt: skip
    ckpt = torch.load(next((tmp_path / "logs" / "sa_distillation_video").rglob("last.ckpt")), weights_only=True)
    state = ckpt["state_dict"]
    # the student ran on centroids, the teacher is the dense network it started from, and it did not move
    assert "net.layer1.0.conv1.dense.weight" in state and "teacher.layer1.0.conv1.weight" in state
    assert not torch.equal(state["net.layer1.0.conv1.dense.weight"], state["teacher.layer1.0.conv1.weight"])
    assert float(state["loss_terms.intra_frame_similarity.samples"]) == 6  # pairs at frames 0, 2, 4 (stride 2)


def test_distillation_task_by_hand():
    from hwnas_pl.modules.tasks import DistillationTask

    task = DistillationTask(2, (1, 1, 1), temperature=2.0)
    task.teacher = lambda x: torch.tensor([[0.0, 2 * math.log(3.0)]]).expand(x.shape[0], 2)  # softmax(t/2): 1/4, 3/4
    pair = [torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)]
    x, y = task.unpack(pair)
    assert x is y and x.flatten().tolist() == [0.0, 1.0]  # the pair as a clip of 2 frames
    student = torch.zeros(2, 2)  # uniform
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert float(task.loss(student, y)) == pytest.approx(4 * kl, rel=1e-5)  # T^2 KL(teacher || student)
    task = DistillationTask(2, (1, 1, 1), objective="nmse")
    task.teacher = lambda x: torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    # (0 - 1)^2 + (0 - 2)^2 + (0 - 3)^2 + (2 + 1)^2 = 23 over 1 + 4 + 9 + 1 = 15
    assert float(task.loss(torch.tensor([[0.0, 0.0], [0.0, 2.0]]), y)) == pytest.approx(23 / 15)
    with pytest.raises(ConfigError, match="DistillationTask objective must be kl or nmse, got 'l2'"):
        DistillationTask(2, (1, 1, 1), objective="l2")


@pytest.mark.slow
@pytest.mark.parametrize(("base", "config", "scene", "metric"), [
    ("apolloscape_lane_segmentation", "sa_training_apolloscape_lane", False, "val/f1"),
    ("apolloscape_scene_parsing", "sa_training_apolloscape_scene", True, "val/miou"),
])  # fmt: skip
def test_sa_training_apolloscape_configs_on_the_fixture(tmp_path, base, config, scene, metric):
    from datasets import write_apolloscape

    data = tmp_path / "data"
    write_apolloscape(data, {"Record001": 3, "Record002": 2}, scene=scene)
    small = ["--data.init_args.data_dir", str(data), "--data.init_args.image_size", "[64, 64]",
             "--data.init_args.crop_size", "[32, 32]", "--data.init_args.num_workers", "0",
             "--data.init_args.batch_size", "2", "--trainer.max_epochs", "1", "--trainer.logger", "false"]  # fmt: skip
    _fit("--config", str(CONFIGS / f"{base}.yaml"), *small, cwd=tmp_path)
    out = _fit("--config", str(CONFIGS / f"{config}.yaml"), *small, cwd=tmp_path)
    assert metric in out
    state = torch.load(next((tmp_path / "logs" / config).rglob("last.ckpt")), weights_only=True)["state_dict"]
    assert "net.encoder.layer1.0.conv1.dense.weight" in state  # the encoder ran on centroids
    # Eq. 1's mean map of layer4 at 32x32 crops is 512 x 1 x 1; it saw whole pairs of frames
    assert state["loss_terms.intra_frame_similarity.mean_3"].shape == (512, 1, 1)
    assert float(state["loss_terms.intra_frame_similarity.samples"]) % 2 == 0
