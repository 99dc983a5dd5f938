"""HW-PR-NAS parts: the listwise loss (Eq. 3.6-3.7) against hand-computed values on a 4-architecture batch, the
Pareto-rank ground truth against Eq. 3.3-3.5, and the encoders (padding masked, decoder pre-training learns)."""

import math

import numpy as np
import pytest
import torch

from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.architecture_encoders import ParetoScoreNet, TokenDecoder, encode_architectures
from hwnas_pl.nn.listwise_loss import listwise_pareto_loss, rank_order
from hwnas_pl.pareto import as_minimization, pareto_ranks
from hwnas_pl.spaces import NASBench201Space


def _plackett_luce(values):
    return sum(-values[i] + math.log(sum(math.exp(v) for v in values[i:])) for i in range(len(values)))


def test_listmle_on_a_four_architecture_batch_by_hand():
    # (accuracy max, latency min): a=(90, 5) b=(92, 4) c=(85, 6) d=(93, 7) -> b, d non-dominated; a behind b; c last
    F = np.array([[90, 5], [92, 4], [85, 6], [93, 7]], dtype=float)
    ranks = torch.tensor(pareto_ranks(F, ["max", "min"]))
    assert ranks.tolist() == [2, 1, 3, 1]
    scores = torch.tensor([1.0, 3.0, 0.5, 2.0])
    # ties (b, d) by descending score: b (3.0), d (2.0), then a (1.0), c (0.5)
    assert float(listwise_pareto_loss(scores, ranks)) == pytest.approx(_plackett_luce([3.0, 2.0, 1.0, 0.5]))
    soft = torch.softmax(scores, 0)[[1, 3, 0, 2]].tolist()  # Eq. 3.6 then 3.7 as printed
    assert float(listwise_pareto_loss(scores, ranks, on="softmax")) == pytest.approx(_plackett_luce(soft))
    # the order within a front costs nothing: swapping b's and d's scores gives the same loss
    swapped = torch.tensor([1.0, 2.0, 0.5, 3.0])
    assert float(listwise_pareto_loss(swapped, ranks)) == pytest.approx(float(listwise_pareto_loss(scores, ranks)))
    # scores that contradict the ranks cost more
    assert float(listwise_pareto_loss(torch.tensor([3.0, 0.5, 2.0, 1.0]), ranks)) > float(
        listwise_pareto_loss(scores, ranks)
    )
    with pytest.raises(ConfigError, match="on must be one of scores, softmax"):
        listwise_pareto_loss(scores, ranks, on="raw")
    assert rank_order(ranks, scores).tolist() == [1, 3, 0, 2]


def test_pareto_ranks_meet_eq_3_3_to_3_5():
    F = np.random.default_rng(0).random((60, 2))
    ranks = pareto_ranks(F, ["max", "min"])
    M = as_minimization(F, ["max", "min"])

    def dominates(i, j):
        return bool(np.all(M[i] <= M[j]) and np.any(M[i] < M[j]))

    for k in range(1, ranks.max() + 1):
        front, nxt = np.flatnonzero(ranks == k), np.flatnonzero(ranks == k + 1)
        assert not any(dominates(i, j) for i in front for j in front)  # (3.3)
        assert not any(dominates(j, i) for j in nxt for i in front)  # (3.4)
        assert all(any(dominates(i, j) for i in front) for j in nxt)  # (3.5)


SPACE = NASBench201Space()
ARCHS = SPACE.sample(40, np.random.default_rng(0))


def test_encodings_are_padding_invariant():
    views, stats = encode_architectures(SPACE, ARCHS, (3, 32, 32), 10)
    assert views["af"].shape == (40, 8) and views["tokens"].shape == (40, 6) and views["adjacency"].shape == (40, 8, 8)
    assert np.allclose(views["af"].mean(0).numpy(), 0, atol=1e-5)  # standardised on the set itself
    padded, _ = encode_architectures(SPACE, ARCHS, (3, 32, 32), 10, {**stats, "nodes": 11, "length": 9})
    torch.manual_seed(0)
    net = ParetoScoreNet(stats, ["cpu", "gpu"]).eval()
    with torch.no_grad():
        assert torch.allclose(net(views, "gpu"), net(padded, "gpu"), atol=1e-5)
        assert not torch.allclose(net(views, "cpu"), net(views, "gpu"))  # one head per device
        assert bool(((net.score(views) > 0) & (net.score(views) < 1)).all())
    with pytest.raises(ConfigError, match="No head for device 'tpu'; the network has: cpu, gpu"):
        net(views, "tpu")


def test_decoder_pretraining_reconstructs_tokens():
    views, stats = encode_architectures(SPACE, ARCHS, (3, 32, 32), 10)
    torch.manual_seed(0)
    net = ParetoScoreNet(stats, parts=["gcn", "lstm"])
    decoder = TokenDecoder(net.encoder.out_features, len(stats["vocabulary"]) + 2, stats["length"])
    opt = torch.optim.Adam([*net.encoder.parameters(), *decoder.parameters()], 1e-2)
    first = float(decoder.loss(net.encoder(views), views["tokens"]))
    for _ in range(400):
        loss = decoder.loss(net.encoder(views), views["tokens"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 0.9 * math.log(5) and float(loss) < 0.3 * first  # from about chance (5 ops) to well below it
