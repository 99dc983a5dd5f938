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
    generator = torch.Generator().manual_seed(0)  # random rows whose full sub-vectors the 62 planes tell apart
    x, w = torch.randn(5, 7, generator=generator), torch.randn(7, 2, generator=generator)
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
    with pytest.raises(ConfigError, match="frames must be one of intra, inter, both, got 'sometimes'"):
        ReuseLinear(nn.Linear(2, 2), 2, 2, frames="sometimes")


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


def test_per_sample_clustering_gives_what_batch_one_inference_gives():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    a, b = torch.randn(1, 3, 6, 6), torch.randn(1, 3, 6, 6)
    single = ReuseConv2d(conv, 9, 4)
    alone_a, n_a = single(a), single.last[0].n_centroids
    alone_b, n_b = single(b), single.last[0].n_centroids
    alone = [alone_a, alone_b]
    per_sample = ReuseConv2d(conv, 9, 4, per_sample=True)
    batched = per_sample(torch.cat([a, b]))
    assert torch.allclose(batched, torch.cat(alone), atol=1e-6)  # no cluster crosses the two images
    rows, blocks = 36, 3  # 6x6 receptive fields of 27 values in sub-vectors of 9
    assert per_sample.compression_ratio == pytest.approx(1 - (n_a + n_b) / (2 * rows * blocks))
    # Deep Reuse's batch clustering instead: two identical images share every cluster
    shared = ReuseConv2d(conv, 9, 4)
    shared(torch.cat([a, a]))
    assert shared.compression_ratio == pytest.approx(1 - n_a / (2 * rows * blocks))


def test_inter_frame_only_reuses_the_previous_frames_products_and_computes_the_rest_exactly():
    from hwnas_pl.nn.reuse import CompressionRatio, reset_reuse

    linear = nn.Linear(2, 1, bias=False)
    linear.weight.data = torch.tensor([[1.0, 10.0]])
    layer = ReuseLinear(linear, input_dim=2, hash_size=2, frames="inter")
    layer.planes = torch.eye(2)  # the hash is the sign of each coordinate
    net, metric = nn.Sequential(layer), CompressionRatio()
    # frame 1: nothing to reuse, every row exact (even the two that share the key ++)
    assert net(torch.tensor([[1.0, 2.0], [3.0, 4.0], [-1.0, 5.0]])).flatten().tolist() == [21.0, 43.0, 49.0]
    assert layer.new_clusters == 3 and layer.compression_ratio == 0.0
    metric.update(net)
    # frame 2: [5, 6] has the key ++ of frame 1, whose product is the mean of its rows' (21 + 43) / 2 = 32;
    # [-2, -1] (key --) is new and exact
    assert net(torch.tensor([[5.0, 6.0], [-2.0, -1.0]])).flatten().tolist() == [32.0, -12.0]
    assert layer.new_clusters == 1 and layer.compression_ratio == 0.5
    metric.update(net)
    out = metric.compute()  # 4 products of 5 sub-vectors, 2 MACs each
    assert float(out["compression_ratio"]) == pytest.approx(1 - 4 / 5) and float(out["macs_saved"]) == 2.0
    # frame 3 keeps frame 2's products: key ++ still 32 (one frame of memory: frame 2 carried it on)
    assert net(torch.tensor([[0.5, 0.5]])).flatten().tolist() == [32.0]
    reset_reuse(net)  # a clip boundary: computed exactly again
    assert net(torch.tensor([[5.0, 6.0]])).flatten().tolist() == [65.0] and layer.new_clusters == 1


def test_both_frames_compression_counts_the_products_taken_from_the_previous_frame():
    torch.manual_seed(0)
    frame = torch.randn(1, 3, 8, 8)
    both = ReuseConv2d(nn.Conv2d(3, 4, 3, padding=1), 9, 5, frames="both")
    both(frame)
    c = both.last[0]
    assert both.compression_ratio == pytest.approx(1 - c.n_centroids / (c.rows * c.blocks))  # intra only
    assert both.compression_ratio < 1.0
    both(frame)
    assert both.compression_ratio == 1.0  # every cluster came from the previous frame


def _reconstruct(t, planes, groups):
    """Each sub-vector replaced by its cluster's centroid (the Q-hat, K-hat, V-hat of lsh_attention)."""
    from hwnas_pl.nn.reuse import cluster_means, lsh_cluster

    rows = t.reshape(-1, t.shape[-1])
    return cluster_means(rows, lsh_cluster(rows, planes, groups), planes.shape[0]).reshape(t.shape)


@pytest.mark.parametrize("mask", ["none", "float", "bool"])
def test_lsh_attention_is_attention_on_the_centroid_reconstructions(mask):
    import torch.nn.functional as F

    from hwnas_pl.nn.reuse import lsh_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 6) for _ in range(3))
    planes = projections(4, 2, seed=1)  # coarse: few clusters; d = 6 in blocks of 4 (the last zero-padded)
    attn_mask = {"none": None, "float": torch.randn(2, 3, 7, 7), "bool": torch.rand(7, 7) > 0.3}[mask]
    if mask == "bool":
        attn_mask[:, 0] = True  # every query sees a key
    out, clusters, (dense, reuse) = lsh_attention(q, k, v, planes, attn_mask)
    q_hat, k_hat, v_hat = (_reconstruct(t, planes, 6) for t in (q, k, v))
    expected = F.scaled_dot_product_attention(q_hat, k_hat, v_hat, attn_mask)
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask), atol=1e-2)
    assert [c.samples for c in clusters] == [6, 6, 6]  # one clustering per (batch, head)
    assert dense == 2 * 6 * 7 * 7 * 2 * 4 and 0 < reuse < dense


def test_lsh_attention_of_identical_tokens_by_hand():
    from timm.layers import Attention

    from hwnas_pl.nn.reuse import CompressionRatio, ReuseAttention, is_attention

    torch.manual_seed(0)
    attention = Attention(dim=8, num_heads=2, qkv_bias=True).eval()
    assert is_attention(attention)
    layer = ReuseAttention(attention, input_dim=4, hash_size=8)
    x = torch.randn(1, 1, 8).expand(1, 5, 8)  # 5 identical tokens: one cluster of Q, K and V per head
    with torch.no_grad():
        out = layer(x)
        dense = attention(x)
    assert torch.allclose(out, dense, atol=1e-6)  # identical rows are their own centroids
    assert [c.n_centroids for c in layer.last] == [2, 2, 2] and layer.compression_ratio == pytest.approx(1 - 6 / 30)
    metric = CompressionRatio()
    metric.update(nn.Sequential(layer))
    # dense: QK^T and AV, 2 x (2 heads x 5 x 5 x 4); reuse per head: (1 x 1 + 5 x 1) x 4
    assert float(metric.compute()["macs_saved"]) == 2 * 2 * 5 * 5 * 4 - 2 * (1 + 5) * 4


def test_attention_reuse_trains_straight_through():
    import torch.nn.functional as F
    from timm.layers import Attention

    from hwnas_pl.nn.reuse import ReuseAttention

    torch.manual_seed(0)
    attention = Attention(dim=8, num_heads=2)
    x = torch.randn(2, 6, 8, requires_grad=True)
    layer = ReuseAttention(attention, 2, 1)
    out = layer(x)
    assert not torch.allclose(out, attention(x), atol=1e-3)  # one hyperplane: coarse clusters in the forward
    out.square().sum().backward()
    reuse_grad = x.grad.clone()
    x.grad = None
    # the same loss with the dense forward's gradient path but the reuse output's value
    qkv = attention.qkv(x).reshape(2, 6, 3, 2, 4).permute(2, 0, 3, 1, 4)
    dense = F.scaled_dot_product_attention(*qkv.unbind(0))
    value = dense + (layer.attend(*qkv.detach().unbind(0)) - dense).detach()
    attention.proj(value.transpose(1, 2).reshape(2, 6, 8)).square().sum().backward()
    assert torch.allclose(reuse_grad, x.grad, atol=1e-6)


def test_vit_and_swin_attentions_swapped_exact_when_off_and_with_fine_hashing():
    from timm.layers import Attention
    from timm.models.swin_transformer import SwinTransformer, WindowAttention
    from timm.models.vision_transformer import VisionTransformer

    from hwnas_pl.nn.reuse import QKV_REASON, ReuseAttention

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=3, embed_dim=16, depth=2, num_heads=2)
    swin = SwinTransformer(img_size=32, patch_size=4, window_size=4, embed_dim=16, depths=(2,), num_heads=(2,),
                           num_classes=3)  # fmt: skip  # block 1 shifts its windows: an attention mask
    for net, x, kind in ((vit.eval(), torch.randn(2, 1, 16, 16), Attention),
                         (swin.eval(), torch.randn(2, 3, 32, 32), WindowAttention)):  # fmt: skip
        y = net(x)
        names = [n for n, m in net.named_modules() if isinstance(m, kind)]
        net, dense = to_reuse(net, {n: {"input_dim": 8, "hash_size": 40} for n in names}, default=None)
        assert [n for n, m in net.named_modules() if isinstance(m, ReuseAttention)] == names
        assert all(dense[f"{n}.qkv"] == QKV_REASON for n in names)
        assert torch.allclose(net(x), y, atol=1e-4)  # distinct rows are their own centroids: attention exact
        set_reuse(net, False)
        assert torch.equal(net(x), y)
        net = from_reuse(net)
        assert [n for n, m in net.named_modules() if isinstance(m, kind)] == names and torch.equal(net(x), y)
    # a coarse setting changes the output; naming qkv swaps it too
    vit, dense = to_reuse(vit, {"blocks.0.attn.qkv": {"input_dim": 4, "hash_size": 2}},
                          default={"input_dim": 4, "hash_size": 2})  # fmt: skip
    assert isinstance(vit.blocks[0].attn.dense.qkv, ReuseLinear) and "blocks.1.attn.qkv" in dense
    assert not torch.allclose(vit(torch.randn(1, 1, 16, 16)), y[:1], atol=1e-3)


def test_norm_buckets_keep_vectors_of_different_lengths_apart():
    planes = torch.eye(2)  # the hash is the sign of each coordinate: [1, 0], [1.5, 0] and [4, 0] share it
    x = torch.tensor([[1.0, 0.0], [1.5, 0.0], [4.0, 0.0], [0.0, 0.0], [1e-3, 0.0]])
    signs = lsh_cluster(x, planes)
    assert signs.index[0, 0] == signs.index[0, 1] == signs.index[0, 2]  # direction only: one cluster
    normed = lsh_cluster(x, planes, norm_step=1.0)  # buckets floor(log2 |v|): 0, 0, 2, zero apart, -10
    ids = normed.index[0].tolist()
    assert ids[0] == ids[1] and len({ids[0], ids[2], ids[3], ids[4]}) == 4
    assert normed.centroids[ids[0]].tolist() == [1.25, 0.0] and normed.n_centroids == 4
    net, _ = to_reuse(nn.Sequential(nn.Linear(2, 1)), default={"input_dim": 2, "hash_size": 2, "norm_step": 0.5})
    assert net[0].norm_step == 0.5
    with pytest.raises(ConfigError, match="norm_step must be > 0 or null, got 0"):
        ReuseLinear(nn.Linear(2, 1), 2, 2, norm_step=0)


def test_a_bare_layer_is_not_swapped_for_itself():
    model, dense = to_reuse(nn.Linear(4, 2))
    assert isinstance(model, nn.Linear) and dense == {"": "the model itself: to_reuse swaps layers inside a container"}


def test_exact_gradients_are_those_of_the_centroid_product_for_fixed_clusters():
    from hwnas_pl.nn.reuse import cluster_means

    torch.manual_seed(0)
    x = torch.randn(6, 4, requires_grad=True)
    w = torch.randn(4, 3, requires_grad=True)
    planes = projections(2, 1)  # coarse: two clusters per block at most
    reuse_matmul(x, w, planes, gradient="exact").square().sum().backward()
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    clusters = lsh_cluster(x.detach(), planes)
    (cluster_means(x, clusters, 2) @ w).square().sum().backward()  # X-hat W, differentiated by autograd
    assert torch.allclose(gx, x.grad, atol=1e-5) and torch.allclose(gw, w.grad, atol=1e-5)
    assert not torch.allclose(gw, x.detach().T @ (2 * (cluster_means(x.detach(), clusters, 2) @ w.detach())))
    with pytest.raises(ConfigError, match="gradient must be one of dense, exact, got 'smooth'"):
        ReuseLinear(nn.Linear(2, 1), 2, 2, gradient="smooth")
