r"""Representation similarity: linear CKA and the RMI score of HW-EvRSNAS (Eq. 2).

Linear CKA (Kornblith et al., 2019) of two representations of the same ``n`` inputs, ``X`` (n×p) and ``Y`` (n×q),
each flattened per input and centred over the inputs:

.. math:: \mathrm{CKA}(X, Y) = \frac{\lVert Y^\top X\rVert_F^2}{\lVert X^\top X\rVert_F\,\lVert Y^\top Y\rVert_F}
          = \frac{\langle K_c, L_c\rangle_F}{\lVert K_c\rVert_F\,\lVert L_c\rVert_F},
   \qquad K_c = H X X^\top H,\; L_c = H Y Y^\top H,\; H = I - \tfrac1n \mathbf{1}\mathbf{1}^\top

computed through the n×n Gram matrices (cheap when the feature maps are large and the batch small, as here). It
lies in [0, 1], is invariant to orthogonal transforms and isotropic scaling of either representation (and, being
centred, to translations), and the two representations need not have the same width.

The RMI score of HW-EvRSNAS (Eq. 2, following RMI-NAS) sums it over L paired layers of a candidate and a reference
model, :math:`\varphi(\alpha^*, \alpha) = \sum_{i=1}^{L} \mathrm{CKA}(X^{i*}, X^i)`, so it lies in [0, L]. Centring
is the RMI-NAS reading (the paper does not say).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from hwnas_pl.errors import ConfigError


def centred_gram(x: torch.Tensor) -> torch.Tensor:
    r""":math:`H X X^\top H` of ``x`` (n, ...) flattened per row."""
    x = x.reshape(x.shape[0], -1)
    x = x - x.mean(dim=0, keepdim=True)
    return x @ x.T


def linear_cka(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Linear CKA of two representations of the same inputs (differentiable; a 0-d tensor in [0, 1]).

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> round(float(linear_cka(x, 3 * x)), 6), round(float(linear_cka(x, x[:, :1])), 4)
        (1.0, 0.7906)

    Raises:
        ConfigError: when the two do not hold the same number of inputs, or fewer than two.
    """
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ConfigError(
            f"linear_cka needs two representations of the same >= 2 inputs, got {x.shape[0]} and {y.shape[0]} rows."
        )
    dtype = torch.promote_types(x.dtype, y.dtype)
    k, m = centred_gram(x.to(dtype)), centred_gram(y.to(dtype))
    # sqrt(. + eps), not norm(): a constant representation (a cell of "none" ops) has a zero Gram matrix, whose
    # norm has no gradient; it scores 0 with finite gradients instead of NaN
    return (k * m).sum() / (torch.sqrt((k * k).sum() + eps) * torch.sqrt((m * m).sum() + eps))


def rmi_score(candidate: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> torch.Tensor:
    """HW-EvRSNAS Eq. 2: the sum of linear CKA over the paired layers (in [0, L]).

    Raises:
        ConfigError: when the two lists do not pair up.
    """
    if len(candidate) != len(reference) or not candidate:
        raise ConfigError(
            f"rmi_score pairs layers one to one, got {len(candidate)} candidate and {len(reference)} reference "
            "feature maps."
        )
    return torch.stack([linear_cka(a, b) for a, b in zip(candidate, reference)]).sum()


class LinearCKA(Metric):
    """Linear CKA between two representations accumulated over batches (the rows of every ``update`` are inputs).

    CKA does not decompose over batches (the centring and the norms are over all inputs), so the flattened
    features are kept and CKA is computed once over all of them; under DDP they are gathered from every rank.

    Example:
        >>> m = LinearCKA()
        >>> x = torch.randn(8, 5)
        >>> m.update(x[:4], 2 * x[:4]); m.update(x[4:], 2 * x[4:])
        >>> round(float(m.compute()), 6)
        1.0
    """

    is_differentiable = True
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("xs", default=[], dist_reduce_fx="cat")
        self.add_state("ys", default=[], dist_reduce_fx="cat")

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.shape[0] != y.shape[0]:
            raise ConfigError(f"LinearCKA.update got {x.shape[0]} and {y.shape[0]} rows; expected the same inputs.")
        self.xs.append(x.detach().reshape(x.shape[0], -1))
        self.ys.append(y.detach().reshape(y.shape[0], -1))

    def compute(self) -> torch.Tensor:
        xs = torch.cat(self.xs) if isinstance(self.xs, list) else self.xs
        ys = torch.cat(self.ys) if isinstance(self.ys, list) else self.ys
        return linear_cka(xs, ys)
