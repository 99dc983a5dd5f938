"""Linear CKA / RMI (HW-EvRSNAS Eq. 2), the zero-cost proxies checked against hand-computed values, and the proxy
cost models (seeded, cached, the selected batch, one-batch training raising similarity)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from hwnas_pl.datamodules import DigitsDataModule
from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.proxies import RMIProxyModel, ZeroCostModel, load_reference
from hwnas_pl.nn.backbones import CifarResNet
from hwnas_pl.nn.similarity import LinearCKA, linear_cka, rmi_score
from hwnas_pl.nn.zero_cost import grad_norm, jacov, naswot, snip, synflow, zero_cost_proxy, zico
from hwnas_pl.rng import isolated_rng
from hwnas_pl.spaces import MBConvSpace, NASBench201Space

CONV_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NONE_CELL = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


# ---------------------------------------------------------------------------------------------------- CKA
def test_linear_cka_hand_computed_value():
    # centred X: (1/3,-2/3), (-2/3,1/3), (1/3,1/3); Y its first column. ||Y'X||^2 = 5/9, ||X'X|| = sqrt(10)/3,
    # ||Y'Y|| = 2/3 -> CKA = 5 / (2 sqrt(10))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert float(linear_cka(x, x[:, :1])) == pytest.approx(5 / (2 * math.sqrt(10)), rel=1e-6)


def test_linear_cka_invariances_and_range():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 7, generator=g, dtype=torch.float64), torch.randn(20, 5, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(7, 7, generator=g, dtype=torch.float64))
    base = float(linear_cka(x, y))
    assert 0.0 < base < 1.0
    assert float(linear_cka(x @ q, y)) == pytest.approx(base, rel=1e-9)  # orthogonal transform
    assert float(linear_cka(4.5 * x, y)) == pytest.approx(base, rel=1e-9)  # isotropic scaling
    assert float(linear_cka(x + 3.0, y)) == pytest.approx(base, rel=1e-9)  # centred: translation
    assert float(linear_cka(x, x)) == pytest.approx(1.0)
    assert float(linear_cka(x, x @ torch.diag(torch.arange(1.0, 8.0, dtype=torch.float64)))) < 1.0  # not anisotropic
    with pytest.raises(ConfigError, match="same >= 2 inputs"):
        linear_cka(x, y[:10])


def test_cka_of_maps_flattens_and_constant_features_score_zero_with_finite_gradients():
    x = torch.randn(6, 2, 3, 3)
    assert float(linear_cka(x, x.flatten(1))) == pytest.approx(1.0, abs=1e-6)
    zero = torch.zeros(6, 4, requires_grad=True)
    value = linear_cka(zero, torch.randn(6, 3))
    value.backward()
    assert float(value) == 0.0 and torch.isfinite(zero.grad).all()


def test_rmi_score_sums_cka_over_pairs_and_metric_matches_functional():
    g = torch.Generator().manual_seed(1)
    a, b = [torch.randn(10, 4, generator=g) for _ in range(2)], [torch.randn(10, 6, generator=g) for _ in range(2)]
    assert float(rmi_score(a, b)) == pytest.approx(float(linear_cka(a[0], b[0]) + linear_cka(a[1], b[1])))
    with pytest.raises(ConfigError, match="pairs layers one to one"):
        rmi_score(a, b[:1])
    m = LinearCKA()
    m.update(a[0][:5], b[0][:5])
    m.update(a[0][5:], b[0][5:])
    assert float(m.compute()) == pytest.approx(float(linear_cka(a[0], b[0])), rel=1e-6)


# ---------------------------------------------------------------------------------------------------- zero-cost
def _linear(weight, bias=None):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def test_naswot_is_log_det_of_the_hamming_kernel():
    net = nn.Sequential(_linear(torch.eye(2)), nn.ReLU())
    x = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])  # codes 10, 11, 00
    # K = N_A - Hamming = [[2,1,1],[1,2,0],[1,0,2]], det 4
    assert naswot(net, x) == pytest.approx(math.log(4.0))


def test_synflow_is_sum_of_abs_weight_times_path_flow_and_leaves_the_network_alone():
    w = torch.tensor([[-2.0, 3.0]])
    net = nn.Sequential(_linear(w, torch.tensor([0.5])), nn.BatchNorm1d(1))
    assert synflow(net, torch.randn(4, 2)) == pytest.approx(5.0)  # R = |a|+|b|+|c|, dR/dW = 1 -> |a|+|b|
    assert torch.equal(net[0].weight, w) and isinstance(net[1], nn.BatchNorm1d)


def _ce_weight_grad(w, x, y):
    z = x @ w.T
    p = torch.softmax(z, 1)
    p[torch.arange(len(y)), y] -= 1
    return p.T @ x / len(y)  # dCE/dW, by hand


def test_snip_grad_norm_and_zico_against_hand_gradients():
    w = torch.tensor([[0.5, -1.0], [1.5, 0.25], [-0.5, 2.0]])
    x, y = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0], [2.0, 1.0]]), torch.tensor([0, 2, 1, 2])
    net = nn.Sequential(_linear(w))
    g = _ce_weight_grad(w, x, y)
    assert snip(net, x, y) == pytest.approx(float((g * w).abs().sum()), rel=1e-5)
    assert grad_norm(net, x, y) == pytest.approx(float(g.norm()), rel=1e-5)
    parts = torch.stack([_ce_weight_grad(w, x[:2], y[:2]), _ce_weight_grad(w, x[2:], y[2:])]).double()
    expected = math.log(float((parts.abs().mean(0) / parts.std(0)).sum()))
    assert zico(net, x, y) == pytest.approx(expected, rel=1e-5)
    assert net[0].weight.grad is None  # gradients cleared again


def test_jacov_of_a_linear_network_has_one_nonzero_eigenvalue():
    # every input's Jacobian of sum(Wx) is W'1: the correlation matrix is all ones, eigenvalues (n, 0, ..., 0)
    net = nn.Sequential(_linear(torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 1.0]])))
    n, eps = 4, 1e-5
    expected = -(math.log(n + eps) + 1 / (n + eps)) - (n - 1) * (math.log(eps) + 1 / eps)
    assert jacov(net, torch.randn(n, 3)) == pytest.approx(expected, rel=1e-4)


def test_unknown_proxy_is_one_sentence():
    with pytest.raises(ConfigError, match="Unknown zero-cost proxy 'nope'; expected one of: naswot"):
        zero_cost_proxy("nope")


# ---------------------------------------------------------------------------------------------------- cost models
SPACE = NASBench201Space(channels=4, cells=1)
SHAPE = (1, 8, 8)


def test_zero_cost_model_is_seeded_and_fresh_per_proxy():
    a = ZeroCostModel(SPACE, DigitsDataModule(), 10, SHAPE, batch_size=16, seed=3).evaluate([CONV_CELL, NONE_CELL])
    b = ZeroCostModel(SPACE, DigitsDataModule(), 10, SHAPE, batch_size=16, seed=3).evaluate([CONV_CELL, NONE_CELL])
    assert set(a) == {"naswot", "jacov", "grad_norm", "snip", "synflow", "zico"}
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["synflow"][1] == 0.0 and a["snip"][0] > 0  # no path through a cell of "none" ops
    c = ZeroCostModel(SPACE, DigitsDataModule(), 10, SHAPE, ["snip"], batch_size=16, seed=4).evaluate([CONV_CELL])
    assert c["snip"][0] != a["snip"][0]  # another seed, another batch and initialisation


def _reference():
    with isolated_rng(0):
        return CifarResNet(10, SHAPE, depth=8, width=4)


def _rmi(**kw):
    ref = kw.pop("reference", None) or _reference()
    args = {"n_train": 10, "batch_size": 16, "pool_size": 64, "seed": 0, **kw}
    return RMIProxyModel(SPACE, DigitsDataModule(), ref, 10, SHAPE, **args)


def test_rmi_batch_is_the_lowest_reference_loss_of_the_pool():
    model = _rmi()
    from hwnas_pl.evaluators.proxies import draw_examples

    x, y = draw_examples(model.datamodule, 64, 0)
    with torch.no_grad():
        losses = torch.nn.functional.cross_entropy(model.reference(x), y, reduction="none")
    bx, _ = model.batch()
    chosen = [int(torch.nonzero((x == row).flatten(1).all(1))[0]) for row in bx]
    rest = sorted(set(range(64)) - set(chosen))
    assert len(set(chosen)) == 16 and float(losses[chosen].max()) <= float(losses[rest].min())


def test_rmi_training_raises_similarity_and_scores_are_seeded():
    before = _rmi(n_train=0).evaluate([CONV_CELL])["rmi"][0]
    after = _rmi(n_train=30).evaluate([CONV_CELL])["rmi"][0]
    again = _rmi(n_train=30).evaluate([CONV_CELL])["rmi"][0]
    assert 0.0 < before < after <= 3.0 and after == again
    assert _rmi(n_train=5).evaluate([NONE_CELL])["rmi"][0] == 0.0  # a constant representation shares nothing


def test_rmi_reference_from_a_state_dict_and_named_layers(tmp_path):
    ref = CifarResNet(10, SHAPE, depth=8, width=4)
    torch.save(ref.state_dict(), tmp_path / "ref.pt")
    loaded = load_reference(tmp_path / "ref.pt", lambda n, s: CifarResNet(n, s, depth=8, width=4), 10, SHAPE)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), ref.state_dict().values()))
    named = _rmi(reference=ref, reference_layers=["layer1", "layer2", "layer3"]).evaluate([CONV_CELL])["rmi"][0]
    assert named == _rmi(reference=ref).evaluate([CONV_CELL])["rmi"][0]
    with pytest.raises(ConfigError, match="Reference layer 'layer9' is not a module"):
        _rmi(reference=ref, reference_layers=["layer9"])
    with pytest.raises(ConfigError, match="3 stage outputs and the reference 2 layers"):
        _rmi(reference=ref, reference_layers=["layer1", "layer2"]).evaluate([CONV_CELL])
    with pytest.raises(UserInputError, match="Reference model 'missing.ckpt' does not exist"):
        load_reference("missing.ckpt", None, 10, SHAPE)


def test_rmi_reference_from_a_classifier_checkpoint(tmp_path):
    import lightning.pytorch as pl

    from hwnas_pl.modules import ClassifierModule

    module = ClassifierModule(backbone="resnet_cifar", num_classes=10, input_shape=SHAPE)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu")  # fmt: skip
    dm = DigitsDataModule(batch_size=8)
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "ref.ckpt")
    net = load_reference(tmp_path / "ref.ckpt", None, 10, SHAPE)
    assert isinstance(net, CifarResNet)
    assert torch.equal(net.classifier.weight, module.net.classifier.weight.cpu())


def test_stage_modules_one_per_resolution():
    net = SPACE.build(CONV_CELL, 10, (1, 16, 16))
    taps = []
    for m in SPACE.stage_modules(net, (1, 16, 16)):
        m.register_forward_hook(lambda mod, i, o: taps.append(tuple(o.shape[1:])))
    net(torch.zeros(2, 1, 16, 16))
    assert taps == [(4, 16, 16), (8, 8, 8), (16, 4, 4)]
    mb = MBConvSpace()
    arch = mb.sample(1, np.random.default_rng(0))[0]
    sizes = []
    mbnet = mb.build(arch, 10, (3, 32, 32))
    for m in mb.stage_modules(mbnet, (3, 32, 32)):
        m.register_forward_hook(lambda mod, i, o: sizes.append(o.shape[-1]))
    mbnet(torch.zeros(2, 3, 32, 32))
    assert sizes == sorted(set(sizes), reverse=True) and len(sizes) >= 3
