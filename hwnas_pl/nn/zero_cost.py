r"""Zero-cost proxies: a score of an untrained network from one batch, higher = predicted more accurate.

Each function takes the freshly initialised network, one batch ``(x, y)`` and returns a float; none trains, and
none changes the network it is given (the ones that must alter weights or BatchNorm work on a copy). The
definitions follow the papers (and the reading of Abdelfattah et al., 2021, "Zero-Cost Proxies for Lightweight
NAS", for the pruning-at-init ones); "weights" are those of every ``Conv``/``Linear`` layer.

- ``naswot`` (Mellor et al., 2021, Eq. 2): binary ReLU codes :math:`c_i` of the inputs,
  :math:`K_{ij} = N_A - d_H(c_i, c_j)`, score :math:`\log\lvert\det K\rvert`;
- ``jacov`` (Mellor et al., 2020, v1): the correlation matrix :math:`\Sigma_J` of the per-input Jacobians
  :math:`\partial \sum f(x_i) / \partial x_i`, score :math:`-\sum_k \log(\sigma_k + \epsilon) + 1/(\sigma_k +
  \epsilon)` over its eigenvalues, :math:`\epsilon = 10^{-5}`;
- ``grad_norm``: :math:`\sum_l \lVert \partial\mathcal L / \partial W_l\rVert_F` of the cross-entropy;
- ``snip`` (Lee et al., 2019): :math:`\sum \lvert \partial\mathcal L/\partial W \odot W\rvert`;
- ``synflow`` (Tanaka et al., 2020): all parameters replaced by their absolute values, BatchNorm removed
  (Abdelfattah's setting), an all-ones input in float64, :math:`R = \sum f(\mathbf 1)`, score
  :math:`\sum \lvert \partial R/\partial W \odot W\rvert`;
- ``zico`` (Li et al., 2023, Eq. 9): the batch split into ``splits`` parts, per-parameter gradient mean and standard
  deviation over the parts, score :math:`\sum_l \log \sum_{\theta\in l} \mathbb E\lvert g_\theta\rvert /
  \sigma(g_\theta)` (parameters with zero deviation left out).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas_pl.errors import ConfigError

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _weights(net: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in net.modules() if isinstance(m, WEIGHTED)]


def _ce_grads(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor | None]:
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    return [w.grad for w in _weights(net)]


def naswot(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """log|det K| of the ReLU-code kernel (Mellor et al., 2021, Eq. 2)."""
    codes: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        codes.append((output.detach() > 0).reshape(output.shape[0], -1).double())

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    if not codes:
        return float("-inf")  # no ReLU: every input gets the same (empty) code
    c = torch.cat(codes, dim=1)
    k = c @ c.T + (1 - c) @ (1 - c).T  # N_A minus the Hamming distance
    return float(torch.linalg.slogdet(k)[1])


def jacov(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, eps: float = 1e-5) -> float:
    """Score of the Jacobian correlation's eigenvalues (Mellor et al., 2020)."""
    x = x.detach().clone().requires_grad_(True)
    net.zero_grad(set_to_none=True)
    net(x).sum().backward()
    grad = x.grad if x.grad is not None else torch.zeros_like(x)  # an output that does not depend on the input
    jac = grad.reshape(x.shape[0], -1).double()
    net.zero_grad(set_to_none=True)
    corr = torch.corrcoef(jac)
    corr = torch.nan_to_num(corr, nan=0.0)  # a constant Jacobian row has no correlation
    v = torch.linalg.eigvalsh(corr).clamp_min(0)
    return float(-(torch.log(v + eps) + 1.0 / (v + eps)).sum())


def grad_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum of the layers' cross-entropy gradient norms."""
    grads = _ce_grads(net, x, y)
    net.zero_grad(set_to_none=True)
    return float(sum(g.norm() for g in grads if g is not None))


def snip(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    r"""Connection sensitivity :math:`\sum|g \odot W|` (Lee et al., 2019)."""
    grads = _ce_grads(net, x, y)
    score = sum(float((g * w.detach()).abs().sum()) for g, w in zip(grads, _weights(net)) if g is not None)
    net.zero_grad(set_to_none=True)
    return score


def _without_batchnorm(net: nn.Module) -> nn.Module:
    clone = copy.deepcopy(net)
    for module in list(clone.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, child_name, nn.Identity())
    return clone


def synflow(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """Synaptic flow of the all-ones input through the absolute-valued, BatchNorm-free network (Tanaka et al.)."""
    clone = _without_batchnorm(net).double()
    with torch.no_grad():
        for p in clone.parameters():
            p.abs_()
    clone.zero_grad(set_to_none=True)
    clone(torch.ones((1, *x.shape[1:]), dtype=torch.float64)).sum().backward()
    return float(sum((w.grad * w.detach()).abs().sum() for w in _weights(clone) if w.grad is not None))


def zico(net: nn.Module, x: torch.Tensor, y: torch.Tensor, splits: int = 2) -> float:
    """ZiCo (Li et al., 2023): per layer, log of the summed mean/std ratio of the gradients over batch parts."""
    if splits < 2 or x.shape[0] < splits:
        raise ConfigError(f"zico needs splits >= 2 and a batch of at least that many inputs, got {splits}, {len(x)}.")
    per_part = []
    for xs, ys in zip(x.chunk(splits), y.chunk(splits)):
        per_part.append([g.detach().clone() if g is not None else None for g in _ce_grads(net, xs, ys)])
    net.zero_grad(set_to_none=True)
    score = 0.0
    for layer in range(len(per_part[0])):
        if per_part[0][layer] is None:
            continue
        g = torch.stack([part[layer] for part in per_part]).double()
        std, mean = g.std(dim=0), g.abs().mean(dim=0)
        ok = std > 0
        ratio = float((mean[ok] / std[ok]).sum())
        if ratio > 0:
            score += float(np.log(ratio))
    return score


ZERO_COST_PROXIES: dict[str, Callable[..., float]] = {
    "naswot": naswot,
    "jacov": jacov,
    "grad_norm": grad_norm,
    "snip": snip,
    "synflow": synflow,
    "zico": zico,
}


def zero_cost_proxy(name: str) -> Callable[..., float]:
    """The proxy function ``name``.

    Raises:
        ConfigError: for an unknown name.
    """
    if name not in ZERO_COST_PROXIES:
        raise ConfigError(f"Unknown zero-cost proxy '{name}'; expected one of: {', '.join(ZERO_COST_PROXIES)}.")
    return ZERO_COST_PROXIES[name]
