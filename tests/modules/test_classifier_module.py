import functools

import lightning as L
import pytest
import torch

from hwnas_pl.checkpoint import CheckpointMismatchError, check_state_dict_matches
from hwnas_pl.datamodules import DigitsDataModule
from hwnas_pl.errors import ConfigError
from hwnas_pl.modules import ClassifierModule, NonFiniteLossError


def trainer(tmp_path, **kwargs):
    defaults = dict(
        default_root_dir=tmp_path,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**{**defaults, **kwargs})


def test_fit_logs_stage_metrics(tmp_path):
    model = ClassifierModule("small_cnn", num_classes=10, input_shape=(1, 8, 8))
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=2, enable_checkpointing=False)
    t.fit(model, DigitsDataModule(batch_size=32))
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best"} <= set(t.callback_metrics)
    assert 0.0 <= float(t.callback_metrics["val/acc"]) <= 1.0
    t.test(model, DigitsDataModule(batch_size=32), verbose=False)
    assert {"test/loss", "test/acc"} <= set(t.callback_metrics)


def test_val_loss_is_the_sample_weighted_mean(tmp_path):
    """val/loss must equal the cross-entropy over the whole split, also with a smaller last batch."""
    dm = DigitsDataModule(batch_size=100)
    dm.setup("fit")  # 270 validation samples: batches of 100, 100, 70
    model = ClassifierModule("mlp", num_classes=10, input_shape=(1, 8, 8))
    t = trainer(tmp_path, max_epochs=1, enable_checkpointing=False)
    (result,) = t.validate(model, dm, verbose=False)
    x, y = dm.data_val.tensors
    model.eval()
    with torch.no_grad():
        logits = model(x)
    expected_loss = torch.nn.functional.cross_entropy(logits, y).item()
    expected_acc = (logits.argmax(1) == y).float().mean().item()
    assert result["val/loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert result["val/acc"] == pytest.approx(expected_acc, abs=1e-6)


def test_predict_returns_probabilities(tmp_path):
    model = ClassifierModule("mlp", num_classes=10, input_shape=(1, 8, 8))
    out = trainer(tmp_path).predict(model, DigitsDataModule(batch_size=50))
    probs = torch.cat([o["probs"] for o in out])
    assert probs.shape == (270, 10)
    assert torch.allclose(probs.sum(1), torch.ones(270), atol=1e-5)
    assert torch.equal(torch.cat([o["preds"] for o in out]), probs.argmax(1))


def test_nan_loss_stops_with_epoch_and_step(tmp_path):
    model = ClassifierModule(
        "mlp", num_classes=10, input_shape=(1, 8, 8), optimizer=functools.partial(torch.optim.SGD, lr=float("inf"))
    )
    t = trainer(tmp_path, max_epochs=1, limit_val_batches=0, enable_checkpointing=False)
    with pytest.raises(NonFiniteLossError, match=r"The training loss became nan at epoch 0, step 1; expected a finite"):
        t.fit(model, DigitsDataModule(batch_size=32))


def test_scheduler_is_injected():
    model = ClassifierModule(
        "mlp",
        num_classes=10,
        input_shape=(1, 8, 8),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
    )
    conf = model.configure_optimizers()
    assert isinstance(conf["optimizer"], torch.optim.SGD)
    assert isinstance(conf["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)


def test_backbone_with_wrong_output_is_named():
    model = ClassifierModule(lambda n, s: torch.nn.Flatten(), num_classes=10, input_shape=(1, 8, 8))
    batch = (torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"logits of shape \(4, 64\) for a batch of 4 samples"):
        model.training_step(batch, 0)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    a = ClassifierModule("mlp", num_classes=10, input_shape=(1, 8, 8))
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    t.fit(a, DigitsDataModule(batch_size=32))
    path = tmp_path / "a.ckpt"
    t.save_checkpoint(path)
    b = ClassifierModule("small_cnn", num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(
        CheckpointMismatchError, match=r"does not fit ClassifierModule: .* missing .*expected a checkpoint"
    ):
        trainer(tmp_path, max_epochs=2).fit(b, DigitsDataModule(batch_size=32), ckpt_path=path)


def test_check_state_dict_counts():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    other = torch.nn.Sequential(torch.nn.Linear(2, 4))
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict_matches(model, other.state_dict(), source="Checkpoint 'x.ckpt'", writer="pkg.Other")
    msg = str(info.value)
    assert msg.startswith("Checkpoint 'x.ckpt' (it was written by pkg.Other) does not fit Sequential:")
    assert "2 tensors of the model missing (e.g. '1.weight')" in msg
    assert "2 tensors of other shapes (e.g. '0.weight': (4, 2) in the checkpoint, (3, 2) in the model)" in msg


def test_checkpoint_loads_with_weights_only(tmp_path):
    model = ClassifierModule("mlp", num_classes=10, input_shape=(1, 8, 8), label_smoothing=0.1)
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    t.fit(model, DigitsDataModule(batch_size=32))
    t.save_checkpoint(tmp_path / "m.ckpt")
    hparams = torch.load(tmp_path / "m.ckpt", weights_only=True)["hyper_parameters"]
    expected = {
        "backbone": "mlp",
        "num_classes": 10,
        "input_shape": (1, 8, 8),
        "scheduler": None,
        "label_smoothing": 0.1,
        "loss_terms": None,
        "transforms": None,
    }
    assert hparams == expected  # the optimizer class was dropped: it would not load with weights_only
    restored = ClassifierModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert torch.equal(restored.net.net[1].weight, model.net.net[1].weight)
