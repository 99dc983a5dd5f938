"""LSH computation reuse (Treasure What You Have §3 / Deep Reuse): hand-checked clustering, the centroid product,
the compression ratio, exactness with reuse off, straight-through gradients, seeded projections."""

import pytest
import torch
from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.reuse import (
    ReuseConv2d,
    ReuseLinear,
    from_reuse,
    lsh_cluster,
    projections,
    reuse_matmul,
    reuse_product,
    set_reuse,
    to_reuse,
)


def test_identical_rows_share_a_centroid_and_the_product_is_the_dense_one_on_centroids():
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5], [1.0, 2.0, -1.0, 0.5], [-3.0, 1.0, 2.0, -2.0]])
    planes = projections(2, 4, seed=0)
    clusters = lsh_cluster(x, planes)
    assert clusters.blocks == 2  # D = 4 in sub-vectors of L = 2
    for b in range(2):
        assert clusters.index[b][0] == clusters.index[b][1]  # identical rows: one cluster
        assert torch.equal(clusters.centroids[clusters.index[b][0]], x[0, 2 * b : 2 * b + 2])
        assert int(clusters.block[clusters.index[b][0]]) == b
    w = torch.randn(4, 3)
    # identical rows are exact centroids: the reuse product equals the dense one here
    assert torch.allclose(reuse_product(x, w, clusters, 2), x @ w, atol=1e-6)
    # CR = 1 - centroids / (rows * blocks); the two distinct rows give at least 2 clusters per block
    n = clusters.n_centroids
    assert clusters.compression_ratio == pytest.approx(1 - n / 6) and n <= 4


def test_centroid_is_the_mean_of_its_cluster():
    # two nearby rows (same signs against every hyperplane) and a far one; L = D = 2
    planes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # the hash is the sign of each coordinate
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [-1.0, 5.0]])
    c = lsh_cluster(x, planes)
    assert c.index[0][0] == c.index[0][1] != c.index[0][2]
    assert torch.equal(c.centroids[c.index[0][0]], torch.tensor([2.0, 3.0]))
    w = torch.tensor([[1.0], [10.0]])
    assert reuse_product(x, w, c, 2).flatten().tolist() == [32.0, 32.0, 49.0]  # [2, 3]·[1, 10] for both


def test_padding_of_the_last_sub_vector():
    x, w = torch.randn(5, 7), torch.randn(7, 2)
    x[:, 6] = 1.0  # the zero-padded last block holds one real value, the same in every row
    c = lsh_cluster(x, projections(3, 62))  # 62 hyperplanes: distinct full sub-vectors get distinct ids
    assert c.blocks == 3 and c.per_block() == [5, 5, 1]
    assert c.compression_ratio == pytest.approx(1 - 11 / 15)
    assert torch.allclose(reuse_product(x, w, c, 3), x @ w, atol=1e-5)


def test_reuse_layers_are_exact_when_off_and_back_and_train_straight_through():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.Flatten(),
                        nn.Linear(8 * 6 * 6, 5))  # fmt: skip
    x = torch.randn(2, 3, 8, 8)
    dense_out = net(x)
    net, dense = to_reuse(net, default={"input_dim": 9, "hash_size": 6})
    assert isinstance(net[0], ReuseConv2d) and isinstance(net[4], ReuseLinear) and "2" in dense
    assert "grouped convolution" in dense["2"]
    set_reuse(net, False)
    assert torch.equal(net(x), dense_out)
    set_reuse(net, True)
    out = net(x)
    assert out.shape == dense_out.shape and 0.0 <= net[0].compression_ratio < 1.0
    nmse = float((((out - dense_out) ** 2).sum() / (dense_out**2).sum()).detach())  # ||y - y_hat||^2 / ||y||^2
    assert nmse < 0.5
    out.sum().backward()
    assert net[0].dense.weight.grad is not None and torch.isfinite(net[0].dense.weight.grad).all()
    back = from_reuse(net)
    assert isinstance(back[0], nn.Conv2d) and torch.equal(back(x), dense_out)


def test_conv_reuse_matches_the_dense_convolution_when_every_row_is_its_own_cluster():
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    x = torch.randn(2, 4, 9, 9)
    layer = ReuseConv2d(conv, input_dim=36, hash_size=62)
    assert torch.allclose(layer(x), conv(x), atol=1e-5) and layer.compression_ratio == 0.0


def test_straight_through_gradients_are_the_dense_ones():
    x = torch.randn(6, 4, requires_grad=True)
    w = torch.randn(4, 3, requires_grad=True)
    reuse_matmul(x, w, projections(2, 1)).sum().backward()  # coarse clusters: the forward differs from dense
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    (x @ w).sum().backward()
    assert torch.allclose(gx, x.grad) and torch.allclose(gw, w.grad)


def test_projections_depend_on_the_seed_only():
    torch.manual_seed(123)
    a = projections(8, 5, seed=7)
    torch.manual_seed(456)
    assert torch.equal(a, projections(8, 5, seed=7)) and not torch.equal(a, projections(8, 5, seed=8))


def test_config_errors_are_one_sentence():
    net = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="names '9', which is not a module"):
        to_reuse(net, {"9": {"input_dim": 4, "hash_size": 4}})
    with pytest.raises(ConfigError, match="names '0', which cannot be reused: grouped convolution"):
        to_reuse(net, {"0": {"input_dim": 4, "hash_size": 4}})
    with pytest.raises(ConfigError, match="1 <= hash_size <= 62"):
        projections(4, 0)


def test_inter_frame_reuse_on_identical_frames_computes_no_new_cluster():
    from hwnas_pl.nn.reuse import reset_reuse

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    frame = torch.randn(1, 3, 10, 10)
    intra = ReuseConv2d(conv, 9, 5)
    both = ReuseConv2d(conv, 9, 5, frames="both")
    first = both(frame)
    assert both.new_clusters == sum(c.n_centroids for c in both.last)  # the first frame computes every cluster
    second = both(frame)
    assert both.new_clusters == 0 and torch.equal(second, intra(frame)) and torch.equal(first, second)
    shifted = frame.roll(1, dims=3)  # a new frame: only the clusters it does not share are computed
    both(shifted)
    assert 0 < both.new_clusters < sum(c.n_centroids for c in both.last)
    net = nn.Sequential(both)
    reset_reuse(net)
    net(frame)
    assert both.new_clusters == sum(c.n_centroids for c in both.last)  # a clip boundary forgets the last frame
    with pytest.raises(ConfigError, match="frames must be 'intra' or 'both'"):
        ReuseLinear(nn.Linear(2, 2), 2, 2, frames="inter")


def test_compression_ratio_metric_by_hand():
    from hwnas_pl.nn.reuse import CompressionRatio

    layer = ReuseLinear(nn.Linear(4, 3), input_dim=2, hash_size=4)
    net = nn.Sequential(layer)
    metric = CompressionRatio()
    net(torch.tensor([[1.0, -2.0, 0.5, 3.0]]).repeat(4, 1))  # 4 identical rows, 2 blocks: 2 centroids of 8
    metric.update(net)
    out = metric.compute()
    assert float(out["compression_ratio"]) == pytest.approx(0.75)
    assert float(out["macs_saved"]) == (8 - 2) * 2 * 3 and float(out["macs_saved_fraction"]) == pytest.approx(0.75)


def test_reuse_transform_in_a_module():
    from hwnas_pl.modules import ClassifierModule
    from hwnas_pl.nn.reuse import ReuseTransform

    transform = ReuseTransform(default={"input_dim": 9, "hash_size": 6}, skip=("classifier",))
    module = ClassifierModule("small_cnn", 10, (1, 8, 8), transforms=[transform])
    swapped = [n for n, m in module.net.named_modules() if isinstance(m, ReuseConv2d)]
    assert len(swapped) == 4 and transform.dense_layers == {"classifier": "kept dense by the config"}
    assert module(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("hash_size", [1, 8, 24, 30, 52, 60])
def test_bit_packing_is_exact_at_every_hash_size(hash_size):
    from hwnas_pl.nn.reuse import _pack_bits

    bits = torch.rand(3, 50, hash_size, generator=torch.Generator().manual_seed(hash_size)) > 0.5
    expected = [sum(int(b) << k for k, b in enumerate(row)) for row in bits.reshape(-1, hash_size).tolist()]
    assert _pack_bits(bits).reshape(-1).tolist() == expected
