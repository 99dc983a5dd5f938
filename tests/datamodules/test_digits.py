import numpy as np
import pytest
import torch

from hwnas_pl.datamodules import DatasetLayoutError, DigitsDataModule
from hwnas_pl.datamodules.digits import read_optdigits
from hwnas_pl.errors import ConfigError


def setup_dm(**kwargs):
    dm = DigitsDataModule(**kwargs)
    dm.setup("fit")
    return dm


def test_bundled_split_sizes_and_disjointness():
    dm = setup_dm()
    # 1,797 images: round(0.15 * 1797) = 270 for val and for test, the rest for training
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (1257, 270, 270)
    idx = [set(t.tolist()) for t in dm.split_indices(1797)]
    assert not (idx[0] & idx[1]) and not (idx[0] & idx[2]) and not (idx[1] & idx[2])
    assert set().union(*idx) == set(range(1797))


def test_split_is_seeded():
    a, b, c = DigitsDataModule(seed=1), DigitsDataModule(seed=1), DigitsDataModule(seed=2)
    assert torch.equal(a.split_indices(100)[1], b.split_indices(100)[1])
    assert not torch.equal(a.split_indices(100)[1], c.split_indices(100)[1])


def test_standardised_with_training_statistics():
    dm = setup_dm()
    x = dm.data_train.tensors[0]
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3
    assert dm.data_train.tensors[1].dtype == torch.int64 and set(dm.data_train.tensors[1].tolist()) == set(range(10))


def test_resize_and_channel_repeat_for_cifar_networks():
    dm = setup_dm(resize=32, channels=3)
    x, _ = next(iter(dm.train_dataloader()))
    assert dm.input_shape == (3, 32, 32) and x.shape == (64, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 2])


def test_reads_uci_files(optdigits_dir):
    images, labels = read_optdigits(optdigits_dir / "optdigits.tra")
    first = (optdigits_dir / "optdigits.tra").read_text().splitlines()[0].split(",")
    assert images.shape == (40, 8, 8) and images[0, 0, 1] == int(first[1]) and labels[0] == int(first[64])
    dm = setup_dm(data_dir=str(optdigits_dir), val_fraction=0.25, test_fraction=0.25)
    assert len(dm.data_train) + len(dm.data_val) + len(dm.data_test) == 60  # both files
    assert len(dm.data_val) == 15


def test_batch_size_is_divided_among_devices():
    class FakeTrainer:
        world_size = 4

    dm = DigitsDataModule(batch_size=64)
    dm.trainer = FakeTrainer()
    dm.setup("fit")
    assert dm.batch_size_per_device == 16
    dm = DigitsDataModule(batch_size=30)
    dm.trainer = FakeTrainer()
    expected = "Batch size 30 is not divisible by the number of devices 4; expected a multiple of 4, e.g. 28 or 32"
    with pytest.raises(ConfigError, match=expected):
        dm.setup("fit")


def test_missing_data_dir_names_path_and_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"Digits data_dir '.*nowhere' does not exist; expected a directory "):
        DigitsDataModule(data_dir=str(tmp_path / "nowhere"))


def test_empty_data_dir(tmp_path):
    dm = DigitsDataModule(data_dir=str(tmp_path))
    with pytest.raises(DatasetLayoutError, match="holds neither optdigits.tra nor optdigits.tes"):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("1,2,3\n", "has 3 columns in 1 rows; expected 65"),
        (",".join(["17"] * 64 + ["3"]) + "\n", "pixel counts outside 0..16"),
        ("a,b\n", "is not comma-separated integers"),
    ],
)
def test_corrupt_uci_file(tmp_path, content, match):
    (tmp_path / "optdigits.tes").write_text(content)
    with pytest.raises(DatasetLayoutError, match=match):
        read_optdigits(tmp_path / "optdigits.tes")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction \\+ test_fraction < 1"),
        ({"resize": 0}, "resize must be a positive side length"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DigitsDataModule(**kwargs)


def test_bundled_matches_scikit_learn():
    from sklearn.datasets import load_digits

    dm = setup_dm(val_fraction=0.1, test_fraction=0.0)
    assert len(dm.data_train) + len(dm.data_val) == len(load_digits().target)
    assert np.bincount(torch.cat([dm.data_train.tensors[1], dm.data_val.tensors[1]]).numpy()).tolist() == (
        np.bincount(load_digits().target).tolist()
    )
