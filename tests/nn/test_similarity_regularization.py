"""SA-training regularizers (Treasure What You Have Eq. 1-2): KL values by hand, the running mean of the feature
maps in checkpoints and across two DDP ranks, frame pairs and thresholds, cross-layer pooling."""

import math
import types

import pytest
import torch
from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.similarity_regularization import (
    InterFrameSimilarity,
    IntraFrameSimilarity,
    feature_log_distribution,
    kl_divergence,
)

LN3 = math.log(3.0)
KL_QUARTER = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # KL([1/4, 3/4] || [1/2, 1/2])


def _attached(term, net=None):
    holder = types.SimpleNamespace(net=net or nn.Sequential(nn.Identity()))
    term.attach(holder)
    holder.net.train()
    return holder


def test_kl_of_softmax_maps_by_hand():
    log_p = feature_log_distribution(torch.tensor([[0.0, LN3]]))  # softmax: [1/4, 3/4]
    log_q = feature_log_distribution(torch.tensor([[0.0, 0.0]]))
    assert log_p.exp().tolist()[0] == pytest.approx([0.25, 0.75])
    assert float(kl_divergence(log_p, log_q)) == pytest.approx(KL_QUARTER)
    # temperature 2 halves the logits: softmax [1/(1+sqrt 3), sqrt 3/(1+sqrt 3)]
    p = 1 / (1 + math.sqrt(3))
    expected = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    value = kl_divergence(feature_log_distribution(torch.tensor([[0.0, LN3]]), 2.0), log_q)
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_intra_frame_term_against_the_running_mean_by_hand():
    term = IntraFrameSimilarity(["0"], weight=1e-3)
    holder = _attached(term)
    out = holder.net(torch.tensor([[0.0, LN3], [0.0, -LN3]]))  # batch mean [0, 0]: the uniform distribution
    r = term(holder, None, out)
    assert float(r) == pytest.approx(KL_QUARTER)  # both maps are KL_QUARTER from uniform (symmetry)
    assert term.mean("0").tolist() == [0.0, 0.0] and float(term.samples) == 2
    out = holder.net(torch.tensor([[0.0, LN3], [0.0, LN3]]))  # cumulative mean of 4 maps: [0, ln3 / 2]
    r = term(holder, None, out)
    assert term.mean("0").tolist() == pytest.approx([0.0, LN3 / 2])
    q = 1 / (1 + math.sqrt(3))  # softmax([0, ln3/2])
    assert float(r) == pytest.approx(0.25 * math.log(0.25 / q) + 0.75 * math.log(0.75 / (1 - q)), rel=1e-5)
    # an exponential mean with momentum 0.5 instead: [0, 0] then [0, ln3 / 2] too; a third batch differs
    ema = IntraFrameSimilarity(["0"], momentum=0.5)
    h = _attached(ema)
    for batch in ([[0.0, LN3], [0.0, -LN3]], [[0.0, LN3], [0.0, LN3]], [[0.0, 0.0], [0.0, 0.0]]):
        ema(h, None, h.net(torch.tensor(batch)))
    assert ema.mean("0").tolist() == pytest.approx([0.0, LN3 / 4])


def test_intra_frame_means_survive_a_checkpoint():
    term = IntraFrameSimilarity(["0", "1"])
    holder = _attached(term, nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    torch.manual_seed(0)
    term(holder, None, holder.net(torch.randn(4, 1, 6, 6)))
    state = {k: v.clone() for k, v in term.state_dict().items()}
    assert state["mean_0"].shape == (2, 4, 4) and float(state["samples"]) == 4
    fresh = IntraFrameSimilarity(["0", "1"])
    fresh.load_state_dict(state)
    assert torch.equal(fresh.mean("0"), term.mean("0")) and torch.equal(fresh.mean("1"), term.mean("1"))
    assert float(fresh.samples) == 4


def _rank(rank, path, queue):
    torch.distributed.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    term = IntraFrameSimilarity(["0"])
    holder = _attached(term)
    batch = torch.tensor([[1.0, 2.0], [3.0, 4.0]]) if rank == 0 else torch.tensor([[5.0, 6.0]])
    r = term(holder, None, holder.net(batch))
    queue.put((rank, term.mean("0").tolist(), float(term.samples), float(r)))
    torch.distributed.destroy_process_group()


@pytest.mark.ddp
def test_intra_frame_means_are_reduced_over_two_ddp_ranks(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, tmp_path / "store", queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=300)
    # three maps over the two ranks: mean [3, 4] on both
    assert [r[1] for r in results] == [[3.0, 4.0], [3.0, 4.0]] and [r[2] for r in results] == [3.0, 3.0]


def test_inter_frame_term_over_consecutive_frames_by_hand():
    a, b, c = [0.0, LN3], [0.0, 0.0], [0.0, -LN3]  # KL(a||b) = KL(c||b) = KL_QUARTER
    kl_bc = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(uniform || [3/4, 1/4])
    term = InterFrameSimilarity(["0"], frames=3)
    holder = _attached(term)
    assert term.clip_length((torch.zeros(2, 5, 3, 8, 8), None)) == 5  # (B, L, C, H, W) clips say their length
    clip = torch.tensor([[a, b, c]])  # one clip of 3 frames
    out = holder.net(clip.reshape(3, 2))  # the task flattens clips to B*L frames
    assert float(term(holder, (clip, None), out)) == pytest.approx((KL_QUARTER + kl_bc) / 2)  # (a->b), (b->c)
    spans_two = InterFrameSimilarity(["0"], frames=3, frame_threshold=2)
    h = _attached(spans_two)
    assert float(spans_two(h, (clip, None), h.net(clip.reshape(3, 2)))) == pytest.approx(KL_QUARTER)
    pairs = InterFrameSimilarity(["0"], frames=2)  # consecutive samples as pairs: (a, b) and (c, b)
    h = _attached(pairs)
    flat = torch.tensor([a, b, c, b])
    assert float(pairs(h, (flat, None), h.net(flat))) == pytest.approx(KL_QUARTER)


def test_inter_frame_cross_layer_pair_pools_to_the_smaller_shape():
    net = nn.Sequential(nn.Identity(), nn.AvgPool2d(2))
    term = InterFrameSimilarity(["0", "1"], pairs=[["0", "1", 0.5]], frames=2)
    holder = _attached(term, net)
    x = torch.randn(4, 2, 4, 4)
    out = holder.net(x)
    pooled = torch.nn.functional.avg_pool2d(x, 2)  # layer 0 pooled to layer 1's (2, 2, 2) shape
    expected = 0.5 * kl_divergence(feature_log_distribution(pooled[0::2]), feature_log_distribution(out[1::2]))
    assert float(term(holder, (x, None), out)) == pytest.approx(float(expected), rel=1e-5)


def test_similarity_config_errors_are_one_sentence():
    with pytest.raises(ConfigError, match="pairs layer 'fc', which is not in its layers"):
        InterFrameSimilarity(["0"], pairs=[["0", "fc", 1.0]])
    with pytest.raises(ConfigError, match="frame_threshold >= 2"):
        InterFrameSimilarity(["0"], frame_threshold=1)
    with pytest.raises(ConfigError, match="temperature > 0, got 0"):
        IntraFrameSimilarity(["0"], temperature=0)
    term = InterFrameSimilarity(["0"], frames=2)
    holder = _attached(term)
    x = torch.randn(3, 2)
    with pytest.raises(ConfigError, match="got 3 maps of '0', not clips of 2 frames"):
        term(holder, (x, None), holder.net(x))
