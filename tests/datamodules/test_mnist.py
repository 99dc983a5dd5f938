"""Fashion-MNIST and MNIST from their official IDX files, written tiny by the fixtures."""

import gzip

import numpy as np
import pytest
import torch
from datasets import write_idx, write_mnist

from hwnas_pl.datamodules import DatasetLayoutError, FashionMNISTDataModule, MNISTDataModule
from hwnas_pl.datamodules.mnist import read_idx
from hwnas_pl.errors import ConfigError


def test_read_idx_plain_and_gzipped(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        assert np.array_equal(read_idx(write_idx(tmp_path / name, a)), a)
    # the header as the format defines it: 00 00 08 03, then 2, 3, 4 as big-endian int32
    assert (tmp_path / "a-idx3-ubyte").read_bytes()[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4])


def test_fashion_mnist_splits_normalisation_and_subsets(tmp_path):
    write_mnist(tmp_path, n_train=40, n_test=10)
    dm = FashionMNISTDataModule(str(tmp_path), val_size=8, batch_size=4)
    dm.setup()
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (32, 8, 10)
    assert dm.num_classes == 10 and dm.input_shape == (1, 28, 28)
    x, y = dm.data_test[7]  # test image 7: every pixel 7, label 7; Fashion-MNIST's mean 0.2860 and std 0.3530
    assert x.shape == (1, 28, 28) and int(y) == 7
    assert x[0, 0, 0].item() == pytest.approx((7 / 255 - 0.2860) / 0.3530, abs=1e-6)
    train_ids = set(int(v) for v in dm.data_train.tensors[1])
    assert set(int(v) for v in dm.data_val.tensors[1]) | train_ids == set(range(10))
    # the split is seeded: the same seed holds out the same images, another seed others
    pixel = lambda d: sorted(round(float(v), 4) for v in d.data_val.tensors[0][:, 0, 0, 0])  # noqa: E731
    again, other = (FashionMNISTDataModule(str(tmp_path), val_size=8, seed=s) for s in (42, 7))
    again.setup(), other.setup()
    assert pixel(again) == pixel(dm) and pixel(other) != pixel(dm)
    small = FashionMNISTDataModule(str(tmp_path), val_size=8, train_size=12, resize=16, channels=3)
    small.setup()
    assert len(small.data_train) == 12 and small.input_shape == (3, 16, 16)
    assert small.data_train[0][0].shape == (3, 16, 16)
    assert torch.equal(small.data_train[0][0][0], small.data_train[0][0][2])  # gray repeated
    # a constant image stays constant after the antialiased resize
    assert small.data_test[7][0][0].std().item() == pytest.approx(0.0, abs=1e-6)
    # val_size 0 validates on the test set
    test_as_val = FashionMNISTDataModule(str(tmp_path), val_size=0)
    test_as_val.setup()
    assert test_as_val.data_val is test_as_val.data_test and len(test_as_val.data_train) == 40


def test_mnist_in_torchvisions_raw_folder_with_plain_files(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", gz=False)
    dm = MNISTDataModule(str(tmp_path), val_size=5)
    dm.setup()
    assert len(dm.data_train) == 35
    assert dm.data_test[3][0][0, 0, 0].item() == pytest.approx((3 / 255 - 0.1307) / 0.3081, abs=1e-6)


def test_missing_truncated_and_foreign_files_are_named(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"Fashion-MNIST data_dir '.*nowhere' does not exist"):
        FashionMNISTDataModule(str(tmp_path / "nowhere"))
    with pytest.raises(DatasetLayoutError, match=r"no 'train-images-idx3-ubyte' \(or 'train-images-idx3-ubyte.gz'\)"):
        FashionMNISTDataModule(str(tmp_path))
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetLayoutError, match=r"has no 't10k-labels-idx1-ubyte'"):
        FashionMNISTDataModule(str(tmp_path)).setup()
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))  # an interrupted download
    with pytest.raises(DatasetLayoutError, match=r"holds 31260 values but its header declares 40×28×28 = 31360"):
        FashionMNISTDataModule(str(tmp_path), val_size=5).setup()
    path.write_bytes(path.read_bytes()[:50])  # a cut gzip stream
    with pytest.raises(DatasetLayoutError, match=r"IDX file '.*train-images-idx3-ubyte.gz' cannot be read"):
        FashionMNISTDataModule(str(tmp_path), val_size=5).setup()
    path.write_bytes(gzip.compress(b"<html>not found</html>"))
    with pytest.raises(DatasetLayoutError, match="does not start with an IDX magic number"):
        FashionMNISTDataModule(str(tmp_path), val_size=5).setup()
    write_mnist(tmp_path)
    with pytest.raises(ConfigError, match="val_size 40 leaves no training images of 40"):
        FashionMNISTDataModule(str(tmp_path), val_size=40).setup()
    with pytest.raises(ConfigError, match="channels must be 1 or 3, got 2"):
        FashionMNISTDataModule(str(tmp_path), channels=2)
