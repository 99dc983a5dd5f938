r"""Similarity-aware computation reuse ("Treasure What You Have" §3, after Deep Reuse, Ning & Shen 2019).

A convolution, a linear layer and an attention projection all compute :math:`Y = XW`. Rows of :math:`X` that are
near-identical (neighbouring receptive fields, tokens, consecutive frames) are clustered by locality-sensitive
hashing and the product is computed on the cluster centroids only:

1. each row is split into sub-vectors of length ``input_dim`` :math:`L` (the last zero-padded), block :math:`b`;
2. each sub-vector is projected onto ``hash_size`` :math:`H` random hyperplanes; the :math:`H` sign bits are its
   cluster id within its block (at most :math:`2^H` clusters per block);
3. a cluster's centroid is the mean of its sub-vectors; :math:`Y = \sum_b (C_b W_b)[\mathrm{id}_b]`, with
   :math:`C_b` the centroids of block :math:`b` and :math:`W_b` the matching rows of :math:`W`.

The compression ratio is :math:`\mathrm{CR} = 1 - \sum_b n_b / (N B)` (:math:`n_b` centroids of block :math:`b`,
:math:`N` rows, :math:`B` blocks): the share of sub-vector products saved. Projections come from a
``torch.Generator`` seeded by the layer's ``seed``, so every rank and every run holds the same ones. Backward is
straight-through: gradients are those of the dense product (the paper trains "using centroids multiplication"
in the forward pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.transforms import ModelTransform


def projections(input_dim: int, hash_size: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """``(input_dim, hash_size)`` standard-normal hyperplanes from a generator seeded by ``seed`` alone."""
    if input_dim < 1 or not 1 <= hash_size <= 62:
        raise ConfigError(f"LSH needs input_dim >= 1 and 1 <= hash_size <= 62, got {input_dim} and {hash_size}.")
    return torch.randn(input_dim, hash_size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@dataclass
class Clusters:
    """The clusters of all blocks at once.

    Centroids ``(U, L)`` sorted by block, each centroid's block ``(U,)``, each sub-vector's centroid ``(B, N)``.
    """

    centroids: torch.Tensor
    block: torch.Tensor
    index: torch.Tensor
    rows: int
    keys: torch.Tensor | None = None  # (U,) sorted (block, code) packed in int64, when it fits

    @property
    def blocks(self) -> int:
        return int(self.index.shape[0])

    @property
    def n_centroids(self) -> int:
        return int(self.centroids.shape[0])

    def per_block(self) -> list[int]:
        """Centroids in each block."""
        return torch.bincount(self.block, minlength=self.blocks).tolist()

    @property
    def compression_ratio(self) -> float:
        r""":math:`1 - \sum_b n_b / (N B)`."""
        return 1.0 - self.n_centroids / max(self.rows * self.blocks, 1)


def _blocks(x: torch.Tensor, input_dim: int) -> torch.Tensor:
    """``(N, D)`` -> ``(B, N, L)`` sub-vectors (zero-padded to a multiple of ``L``)."""
    n, d = x.shape
    b = math.ceil(d / input_dim)
    if b * input_dim != d:
        x = F.pad(x, (0, b * input_dim - d))
    return x.reshape(n, b, input_dim).transpose(0, 1)


def _pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Sign bits ``(..., H)`` -> int64 codes ``(...)``.

    One float GEMV (exact below 2^24 in float32, 2^53 in float64): 10x faster on CPU than an int64 multiply-and-sum.
    """
    hash_size = bits.shape[-1]
    if hash_size <= 52:
        dtype = torch.float32 if hash_size <= 24 else torch.float64
        weights = 2.0 ** torch.arange(hash_size, device=bits.device, dtype=dtype)
        return (bits.to(dtype) @ weights).to(torch.int64)
    weights = 2 ** torch.arange(hash_size, device=bits.device, dtype=torch.int64)
    return (bits.to(torch.int64) * weights).sum(-1)


def lsh_cluster(x: torch.Tensor, planes: torch.Tensor) -> Clusters:
    """Cluster the rows of ``x`` ``(N, D)`` block by block with the hyperplanes ``planes`` ``(L, H)``.

    All blocks in one pass: a sub-vector's key is its block index followed by its ``H`` sign bits, so one sort
    (``torch.unique``) groups every block's clusters, contiguously and in block order.
    """
    input_dim, hash_size = planes.shape
    blocks = _blocks(x, input_dim)  # (B, N, L)
    n_blocks, n = blocks.shape[:2]
    bits = (blocks @ planes.to(x.dtype)) > 0  # (B, N, H)
    codes = _pack_bits(bits)  # (B, N)
    block_ids = torch.arange(n_blocks, device=x.device)[:, None].expand(n_blocks, n)
    keys = None
    if hash_size + n_blocks.bit_length() <= 62:  # (block, code) packed in one int64
        unique, inverse = torch.unique((codes + block_ids * (2**hash_size)).reshape(-1), return_inverse=True)
        block_of, keys = unique // (2**hash_size), unique
    else:
        pairs = torch.stack([block_ids.reshape(-1), codes.reshape(-1)], dim=1)
        unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)
        block_of = unique[:, 0]
    flat = blocks.reshape(-1, input_dim)
    sums = torch.zeros(len(unique), input_dim, dtype=x.dtype, device=x.device).index_add_(0, inverse, flat)
    counts = torch.bincount(inverse, minlength=len(unique)).to(x.dtype)
    return Clusters(sums / counts[:, None], block_of, inverse.reshape(n_blocks, n), n, keys)


def _weight_blocks(weight: torch.Tensor, blocks: int, input_dim: int) -> torch.Tensor:
    d, k = weight.shape
    if blocks * input_dim != d:
        weight = F.pad(weight, (0, 0, 0, blocks * input_dim - d))
    return weight.reshape(blocks, input_dim, k)


def _centroid_products(centroids: torch.Tensor, block: torch.Tensor, w_blocks: torch.Tensor) -> torch.Tensor:
    """``C_u W_{b(u)}`` for centroids sorted by block, one GEMM per block."""
    counts = torch.bincount(block, minlength=w_blocks.shape[0]).tolist()
    parts = [c @ w_blocks[i] for i, c in enumerate(centroids.split(counts)) if len(c)]
    return torch.cat(parts) if parts else centroids.new_zeros(0, w_blocks.shape[2])


def reuse_product(
    x: torch.Tensor, weight: torch.Tensor, clusters: Clusters, input_dim: int, cache: dict | None = None
) -> torch.Tensor:
    r""":math:`\sum_b (C_b W_b)[\mathrm{id}_b]` for ``weight`` ``(D, K)``, split in blocks like the rows of X.

    With ``cache`` (inter-frame reuse): clusters whose key the previous frame also had take that frame's product;
    only the new ones are multiplied. ``cache`` is updated to this frame's keys and products, and
    ``cache["new"]`` counts the clusters computed.
    """
    w_blocks = _weight_blocks(weight, clusters.blocks, input_dim)
    if cache is None:
        products = _centroid_products(clusters.centroids, clusters.block, w_blocks)
    else:
        if clusters.keys is None:
            raise ConfigError("Inter-frame reuse needs hash_size + log2(blocks) <= 62 (packed cluster keys).")
        products = clusters.centroids.new_empty(clusters.n_centroids, w_blocks.shape[2])
        hit = torch.zeros(clusters.n_centroids, dtype=torch.bool, device=x.device)
        old_keys = cache.get("keys")
        if old_keys is not None and len(old_keys) and cache["products"].shape[1] == w_blocks.shape[2]:
            pos = torch.searchsorted(old_keys, clusters.keys).clamp(max=len(old_keys) - 1)
            hit = old_keys[pos] == clusters.keys
            products[hit] = cache["products"][pos[hit]]
        new = ~hit
        products[new] = _centroid_products(clusters.centroids[new], clusters.block[new], w_blocks)
        cache.update(keys=clusters.keys, products=products, new=int(new.sum()))
    # the gather-and-sum over blocks as one embedding bag per row: 37x faster on CPU than products[index].sum(0)
    return F.embedding_bag(clusters.index.T.contiguous(), products, mode="sum")


class _StraightThrough(torch.autograd.Function):
    """Forward: the reuse product; backward: the dense product's gradients."""

    @staticmethod
    def forward(ctx, x, weight, planes, input_dim, stats, cache):
        clusters = lsh_cluster(x.detach(), planes)
        stats.append(clusters)
        ctx.save_for_backward(x, weight)
        return reuse_product(x.detach(), weight.detach(), clusters, input_dim, cache)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return grad @ weight.T, x.T @ grad, None, None, None, None


def reuse_matmul(
    x: torch.Tensor, weight: torch.Tensor, planes: torch.Tensor, stats: list | None = None, cache: dict | None = None
):
    """``x @ weight`` (``(N, D) @ (D, K)``) on LSH centroids, straight-through in backward.

    The clusters are appended to ``stats``; ``cache`` turns on inter-frame reuse (see :func:`reuse_product`).
    """
    stats = [] if stats is None else stats
    return _StraightThrough.apply(x, weight, planes.to(x.device), planes.shape[0], stats, cache)


class ReuseLayer(nn.Module):
    """Base of the reuse layers: the wrapped dense layer, its LSH settings, the last clusters' statistics.

    Args:
        dense: the layer computed on centroids (its parameters are used, not copied).
        input_dim: sub-vector length L.
        hash_size: hyperplanes H.
        seed: of the projections.
        frames: ``"intra"`` (clusters within each forward pass) or ``"both"`` (also across passes: each forward is
            the next frame of a clip; clusters the previous frame had reuse its products; :meth:`reset` at a clip
            boundary; the memory held is one frame's centroid products).
    """

    def __init__(self, dense: nn.Module, input_dim: int, hash_size: int, seed: int = 0, frames: str = "intra"):
        super().__init__()
        if frames not in ("intra", "both"):
            raise ConfigError(f"Reuse frames must be 'intra' or 'both', got '{frames}'.")
        self.dense = dense
        self.input_dim, self.hash_size, self.seed, self.frames = input_dim, hash_size, seed, frames
        self.register_buffer("planes", projections(input_dim, hash_size, seed), persistent=False)
        self.enabled = True
        self.last: list[Clusters] = []
        self.cache: dict = {}

    def reset(self) -> None:
        """Forget the previous frame (a clip boundary)."""
        self.cache = {}

    @property
    def new_clusters(self) -> int | None:
        """Clusters multiplied in the last frame (inter-frame mode), ``None`` otherwise."""
        return self.cache.get("new") if self.frames == "both" else None

    @property
    def compression_ratio(self) -> float | None:
        """CR of the last forward pass (all its row matrices together), ``None`` before one."""
        if not self.last:
            return None
        saved = sum(c.n_centroids for c in self.last)
        total = sum(c.rows * c.blocks for c in self.last)
        return 1.0 - saved / max(total, 1)

    def matmul(self, rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        self.last = []
        return reuse_matmul(rows, weight, self.planes, self.last, self.cache if self.frames == "both" else None)


class ReuseLinear(ReuseLayer):
    """``nn.Linear`` on LSH centroids of its input rows (tokens, MLP inputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.dense(x)
        rows = x.reshape(-1, x.shape[-1])
        out = self.matmul(rows, self.dense.weight.T)
        if self.dense.bias is not None:
            out = out + self.dense.bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


class ReuseConv2d(ReuseLayer):
    """``nn.Conv2d`` (groups 1) through im2col: one row per receptive field, clustered, multiplied on centroids."""

    def __init__(self, dense: nn.Conv2d, input_dim: int, hash_size: int, seed: int = 0, frames: str = "intra"):
        if dense.groups != 1 or dense.padding_mode != "zeros" or isinstance(dense.padding, str):
            raise ConfigError(
                f"ReuseConv2d needs an ungrouped convolution with numeric zero padding, got groups={dense.groups}, "
                f"padding={dense.padding!r}, padding_mode={dense.padding_mode!r}."
            )
        super().__init__(dense, input_dim, hash_size, seed, frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.dense
        if not self.enabled:
            return conv(x)
        n, _, h, w = x.shape
        cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (N, C*k*k, P)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        out = self.matmul(rows, conv.weight.reshape(conv.out_channels, -1).T)
        if conv.bias is not None:
            out = out + conv.bias
        oh = (h + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1
        ow = (w + 2 * conv.padding[1] - conv.dilation[1] * (conv.kernel_size[1] - 1) - 1) // conv.stride[1] + 1
        return out.reshape(n, oh * ow, -1).transpose(1, 2).reshape(n, -1, oh, ow)


#: the settings a layer gets when the config does not name it
DEFAULT_LAYER = {"input_dim": 16, "hash_size": 8}


def dense_reason(module: nn.Module) -> str | None:
    """Why ``module`` stays dense, or ``None`` when it is swapped for a reuse layer."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"grouped convolution (groups={module.groups}): a row is a few channels, reuse does not pay"
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return "padding other than numeric zero padding"
        return None
    if isinstance(module, nn.Linear):
        return None
    return "not a Conv2d or Linear layer"


def reuse_layer(dense: nn.Module, input_dim: int, hash_size: int, seed: int = 0, frames: str = "intra") -> ReuseLayer:
    """The reuse layer of a ``Conv2d`` or ``Linear`` layer (a one-sentence error for any other)."""
    if isinstance(dense, nn.Conv2d):
        return ReuseConv2d(dense, input_dim, hash_size, seed, frames)
    if isinstance(dense, nn.Linear):
        return ReuseLinear(dense, input_dim, hash_size, seed, frames)
    raise ConfigError(f"Reuse layers replace Conv2d and Linear layers, got {type(dense).__name__}.")


def to_reuse(
    model: nn.Module,
    layers: dict[str, dict[str, int]] | None = None,
    default: dict[str, int] | None = DEFAULT_LAYER,
    skip: tuple[str, ...] = (),
    seed: int = 0,
    frames: str = "intra",
) -> tuple[nn.Module, dict[str, str]]:
    """Swap the ``Conv2d`` (groups 1) and ``Linear`` layers of ``model`` for reuse layers, in place.

    Args:
        model: any network.
        layers: module name -> ``{input_dim, hash_size}`` (the per-layer config ``hwnas lsh-tune`` writes).
        default: the settings of layers ``layers`` does not name; ``None`` swaps only the named ones.
        skip: names kept dense (e.g. the stem, the classifier).
        seed: projections of layer ``i`` (in ``named_modules`` order) are seeded with ``seed + i``.
        frames: ``"intra"`` or ``"both"`` (inter-frame reuse too; see :class:`ReuseLayer`).

    Returns:
        the model and ``{name: reason}`` of the Conv2d/Linear layers left dense.

    Raises:
        ConfigError: when ``layers`` names a module that is not in the model or cannot be reused.
    """
    layers = dict(layers or {})
    modules = dict(model.named_modules())
    unknown = [n for n in layers if n not in modules]
    if unknown:
        raise ConfigError(f"Reuse config names '{unknown[0]}', which is not a module of the model.")
    dense: dict[str, str] = {}
    for i, (name, module) in enumerate(list(model.named_modules())):
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or isinstance(module, ReuseLayer):
            continue
        reason = dense_reason(module)
        if name in layers and reason is not None:
            raise ConfigError(f"Reuse config names '{name}', which cannot be reused: {reason}.")
        settings = layers.get(name, None if name in skip else default)
        if reason is not None or settings is None:
            dense[name] = reason or "kept dense by the config"
            continue
        layer = reuse_layer(module, int(settings["input_dim"]), int(settings["hash_size"]), seed + i, frames)
        _set_module(model, name, layer)
    return model, dense


def from_reuse(model: nn.Module) -> nn.Module:
    """The dense model back: every reuse layer replaced by the layer it wraps (the same parameters)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, ReuseLayer):
            _set_module(model, name, module.dense)
    return model


def set_reuse(model: nn.Module, enabled: bool) -> None:
    """Turn every reuse layer on or off (off: the wrapped layer's exact output)."""
    for module in model.modules():
        if isinstance(module, ReuseLayer):
            module.enabled = enabled


def reset_reuse(model: nn.Module) -> None:
    """Start a new clip: every reuse layer forgets the previous frame."""
    for module in model.modules():
        if isinstance(module, ReuseLayer):
            module.reset()


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


class CompressionRatio(Metric):
    r"""Network compression ratio and share of MACs saved by the reuse layers, over the forward passes seen.

    ``update(model)`` after each forward pass reads every reuse layer's last clusters:
    :math:`\mathrm{CR} = 1 - \sum \text{centroids} / \sum \text{sub-vectors}` and MACs saved
    :math:`= \sum (\text{sub-vectors} - \text{centroids})\,L\,K` over the dense MACs
    :math:`\sum \text{sub-vectors}\,L\,K` of those layers (:math:`K` output features). Sums reduce over DDP.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("centroids", "subvectors", "macs_saved", "macs"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, model: nn.Module) -> None:
        for layer in model.modules():
            if not isinstance(layer, ReuseLayer) or not layer.last:
                continue
            out = layer.dense.out_channels if isinstance(layer.dense, nn.Conv2d) else layer.dense.out_features
            for clusters in layer.last:
                sub = clusters.rows * clusters.blocks
                self.centroids += clusters.n_centroids
                self.subvectors += sub
                self.macs_saved += (sub - clusters.n_centroids) * layer.input_dim * out
                self.macs += sub * layer.input_dim * out

    def compute(self) -> dict[str, torch.Tensor]:
        return {
            "compression_ratio": 1.0 - self.centroids / self.subvectors.clamp_min(1.0),
            "macs_saved": self.macs_saved,
            "macs_saved_fraction": self.macs_saved / self.macs.clamp_min(1.0),
        }


class ReuseTransform(ModelTransform):
    """``transforms: [ReuseTransform]`` in a module's config: :func:`to_reuse` on the built network.

    Args: as :func:`to_reuse` (``layers``, ``default``, ``skip``, ``seed``, ``frames``).
    """

    def __init__(
        self,
        layers: dict[str, dict[str, int]] | None = None,
        default: dict[str, int] | None = None,
        skip: tuple[str, ...] = (),
        seed: int = 0,
        frames: str = "intra",
    ) -> None:
        self.layers, self.default = layers, dict(DEFAULT_LAYER) if default is None else default
        self.skip, self.seed, self.frames = tuple(skip), seed, frames
        self.dense_layers: dict[str, str] = {}

    def apply(self, net: nn.Module) -> nn.Module:
        net, self.dense_layers = to_reuse(net, self.layers, self.default, self.skip, self.seed, self.frames)
        return net
