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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
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
    """The clusters of all blocks (and samples) at once.

    Centroids ``(U, L)`` sorted by block, each centroid's block ``(U,)``, each sub-vector's centroid ``(B, N)``.
    ``computed`` is the number of sub-vector products actually multiplied (the centroids, unless inter-frame reuse
    took some from the previous frame, or computed some rows exactly); ``None`` means the centroids.
    """

    centroids: torch.Tensor
    block: torch.Tensor
    index: torch.Tensor
    rows: int
    keys: torch.Tensor | None = None  # (U,) sorted (block, sample, code) packed in int64, when it fits
    samples: int = 1
    computed: int | None = None
    code_bits: int = 0  # bits of a code within its (block, sample): H, plus 7 with a norm bucket

    @property
    def blocks(self) -> int:
        return int(self.index.shape[0])

    @property
    def n_centroids(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def products(self) -> int:
        """Sub-vector products multiplied: ``computed``, or the centroids."""
        return self.n_centroids if self.computed is None else self.computed

    def per_block(self) -> list[int]:
        """Centroids in each block."""
        return torch.bincount(self.block, minlength=self.blocks).tolist()

    @property
    def compression_ratio(self) -> float:
        r""":math:`1 - \sum_b n_b / (N B)`, with :math:`n_b` the products multiplied in block :math:`b`."""
        return 1.0 - self.products / max(self.rows * self.blocks, 1)


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


def _means(values: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """The mean of each of ``n`` groups of rows: ``(n, L)`` from ``values`` ``(M, L)`` and their group ``index``.

    A group no row is sent to gets zeros.
    """
    sums = values.new_zeros(n, values.shape[1]).index_add_(0, index, values)
    return sums / torch.bincount(index, minlength=n).clamp_min(1).to(values.dtype)[:, None]


def lsh_cluster(x: torch.Tensor, planes: torch.Tensor, samples: int = 1, norm_step: float | None = None) -> Clusters:
    r"""Cluster the rows of ``x`` ``(N, D)`` block by block with the hyperplanes ``planes`` ``(L, H)``.

    All blocks in one pass: a sub-vector's key is its block index followed by its ``H`` sign bits, so one sort
    (``torch.unique``) groups every block's clusters, contiguously and in block order. With ``samples`` > 1 the
    rows are that many equal consecutive groups (the samples of a batch, the heads of an attention) clustered
    separately: the sample index sits between block and code in the key, so no cluster crosses two samples.

    ``norm_step`` (beyond the paper and Deep Reuse): sign bits keep a sub-vector's direction, not its length, so
    a cluster may average vectors of very different norms. With a step :math:`s`, the key also holds the bucket
    :math:`\lfloor \log_2 \lVert v \rVert / s \rfloor` (7 bits; zero vectors apart), so the norms within a
    cluster differ by less than a factor :math:`2^s`.
    """
    input_dim, hash_size = planes.shape
    blocks = _blocks(x, input_dim)  # (B, N, L)
    n_blocks, n = blocks.shape[:2]
    if samples < 1 or n % samples:
        raise ConfigError(f"LSH clustering of {n} rows in {samples} samples needs a whole number of rows per sample.")
    bits = (blocks @ planes.to(x.dtype)) > 0  # (B, N, H)
    codes = _pack_bits(bits)  # (B, N)
    code_bits = hash_size
    if norm_step is not None:
        norms = blocks.norm(dim=-1)
        bucket = torch.floor(torch.log2(norms.clamp_min(1e-30)) / norm_step).clamp(-63, 63).to(torch.int64) + 64
        codes = codes + torch.where(norms > 0, bucket, torch.zeros_like(bucket)) * (2**hash_size)
        code_bits = hash_size + 7
    groups = torch.arange(n_blocks * samples, device=x.device).reshape(n_blocks, samples, 1)
    groups = groups.expand(n_blocks, samples, n // samples).reshape(n_blocks, n)  # block * samples + sample
    keys = None
    if code_bits + (n_blocks * samples).bit_length() <= 62:  # (block, sample, code) packed in one int64
        unique, inverse = torch.unique((codes + groups * (2**code_bits)).reshape(-1), return_inverse=True)
        block_of, keys = unique // (2**code_bits) // samples, unique
    else:
        pairs = torch.stack([groups.reshape(-1), codes.reshape(-1)], dim=1)
        unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)
        block_of = unique[:, 0] // samples
    centroids = _means(blocks.reshape(-1, input_dim), inverse, len(unique))
    return Clusters(centroids, block_of, inverse.reshape(n_blocks, n), n, keys, samples, None, code_bits)


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


def _cached(cache: dict, keys: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(hit, position) of each key among the previous frame's keys in ``cache`` (no hit without a previous frame)."""
    hit = torch.zeros(len(keys), dtype=torch.bool, device=keys.device)
    pos = torch.zeros(len(keys), dtype=torch.long, device=keys.device)
    old_keys = cache.get("keys")
    if old_keys is not None and len(old_keys) and cache["products"].shape[1] == width:
        pos = torch.searchsorted(old_keys, keys).clamp(max=len(old_keys) - 1)
        hit = old_keys[pos] == keys
    return hit, pos


def reuse_product(
    x: torch.Tensor,
    weight: torch.Tensor,
    clusters: Clusters,
    input_dim: int,
    cache: dict | None = None,
    frames: str = "intra",
) -> torch.Tensor:
    r""":math:`\sum_b (C_b W_b)[\mathrm{id}_b]` for ``weight`` ``(D, K)``, split in blocks like the rows of X.

    ``frames`` (with ``cache``, which holds the previous frame's cluster keys and products):

    - ``"intra"``: every centroid is multiplied (no cache needed);
    - ``"both"``: clusters whose key the previous frame also had take that frame's product; the other centroids
      are multiplied;
    - ``"inter"``: no clustering within the frame: sub-vectors whose key the previous frame had take its product,
      the others are multiplied exactly (each its own row); a key's product kept for the next frame is the mean of
      its sub-vectors' products (the product of their centroid).

    ``cache`` is updated to this frame's keys and products; ``cache["new"]`` and ``clusters.computed`` count the
    products multiplied.
    """
    w_blocks = _weight_blocks(weight, clusters.blocks, input_dim)
    if frames == "intra" or cache is None:
        products = _centroid_products(clusters.centroids, clusters.block, w_blocks)
        return F.embedding_bag(clusters.index.T.contiguous(), products, mode="sum")
    if clusters.keys is None:
        raise ConfigError("Inter-frame reuse needs hash_size + log2(blocks * samples) <= 62 (packed cluster keys).")
    width = w_blocks.shape[2]
    hit, pos = _cached(cache, clusters.keys, width)
    products = clusters.centroids.new_zeros(clusters.n_centroids, width)
    if hit.any():
        products[hit] = cache["products"][pos[hit]]
    if frames == "both":
        new = ~hit
        products[new] = _centroid_products(clusters.centroids[new], clusters.block[new], w_blocks)
        index, table, computed = clusters.index, products, int(new.sum())
    else:  # "inter": the rows of clusters the previous frame lacked are multiplied one by one
        blocks = _blocks(x, input_dim)
        miss = ~hit[clusters.index]  # (B, N)
        miss_block, miss_row = miss.nonzero(as_tuple=True)  # sorted by block
        exact = _centroid_products(blocks[miss_block, miss_row], miss_block, w_blocks)
        index = clusters.index.clone()
        index[miss_block, miss_row] = clusters.n_centroids + torch.arange(len(exact), device=x.device)
        table, computed = torch.cat([products, exact]), len(exact)
        missed = _means(exact, clusters.index[miss_block, miss_row], clusters.n_centroids)
        products = torch.where(hit[:, None], products, missed)
    cache.update(keys=clusters.keys, products=products, new=computed)
    clusters.computed = computed
    # the gather-and-sum over blocks as one embedding bag per row: 37x faster on CPU than products[index].sum(0)
    return F.embedding_bag(index.T.contiguous(), table, mode="sum")


def _spread(per_cluster: torch.Tensor, clusters: Clusters, width: int) -> torch.Tensor:
    """``(N, width)``: each row's sub-vectors replaced by their cluster's row of ``per_cluster`` ``(U, L)``."""
    rows = per_cluster[clusters.index]  # (B, N, L)
    return rows.transpose(0, 1).reshape(clusters.rows, -1)[:, :width]


def cluster_means(values: torch.Tensor, clusters: Clusters, input_dim: int) -> torch.Tensor:
    r"""``values`` ``(N, D)`` with each sub-vector replaced by the mean of its cluster's (``clusters`` of the rows).

    Of the layer's input this is :math:`\hat X`, the rows the reuse product multiplies: :math:`\hat X W`.
    """
    index = clusters.index.reshape(-1)
    means = _means(_blocks(values, input_dim).reshape(-1, input_dim), index, clusters.n_centroids)
    return _spread(means, clusters, values.shape[1])


GRADIENTS = ("dense", "exact")


class _StraightThrough(torch.autograd.Function):
    r"""Forward: the reuse product :math:`\hat X W`; backward, the cluster assignment being not differentiable.

    - ``dense``: the dense product's gradients, :math:`G W^\top` and :math:`X^\top G` (straight-through);
    - ``exact``: the reuse product's own for fixed clusters: :math:`\hat X^\top G` for the weight and, for the
      input, :math:`G W^\top` averaged over each cluster (a centroid is its rows' mean). Inter-frame modes use
      ``dense`` (products taken from the previous frame do not depend on this one).
    """

    @staticmethod
    def forward(ctx, x, weight, planes, input_dim, stats, cache, frames, samples, norm_step, gradient):
        clusters = lsh_cluster(x.detach(), planes, samples, norm_step)
        stats.append(clusters)
        ctx.save_for_backward(x, weight)
        ctx.clusters, ctx.input_dim = clusters, input_dim
        ctx.exact = gradient == "exact" and frames == "intra"
        return reuse_product(x.detach(), weight.detach(), clusters, input_dim, cache, frames)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad @ weight.T
        if not ctx.exact:
            return grad_x, x.T @ grad, *([None] * 8)
        x_hat = _spread(ctx.clusters.centroids, ctx.clusters, x.shape[1])  # the centroids are x's cluster means
        return cluster_means(grad_x, ctx.clusters, ctx.input_dim), x_hat.T @ grad, *([None] * 8)


def reuse_matmul(
    x: torch.Tensor,
    weight: torch.Tensor,
    planes: torch.Tensor,
    stats: list | None = None,
    cache: dict | None = None,
    frames: str = "intra",
    samples: int = 1,
    norm_step: float | None = None,
    gradient: str = "dense",
):
    """``x @ weight`` (``(N, D) @ (D, K)``) on LSH centroids.

    ``gradient``: ``dense`` (straight-through) or ``exact`` (of the reuse product for fixed clusters; see
    :class:`_StraightThrough`). The clusters are appended to ``stats``; ``cache`` and ``frames`` set inter-frame
    reuse (see :func:`reuse_product`); ``samples`` and ``norm_step`` as :func:`lsh_cluster`.
    """
    stats = [] if stats is None else stats
    return _StraightThrough.apply(
        x, weight, planes.to(x.device), planes.shape[0], stats, cache, frames, samples, norm_step, gradient
    )


FRAMES = ("intra", "inter", "both")


def _check_frames(frames: str) -> None:
    if frames not in FRAMES:
        raise ConfigError(f"Reuse frames must be one of {', '.join(FRAMES)}, got '{frames}'.")


class ReuseLayer(nn.Module):
    """Base of the reuse layers: the wrapped dense layer, its LSH settings, the last clusters' statistics.

    Args:
        dense: the layer computed on centroids (its parameters are used, not copied).
        input_dim: sub-vector length L.
        hash_size: hyperplanes H.
        seed: of the projections.
        frames: ``"intra"`` (clusters within each forward pass), ``"inter"`` (no clustering within a pass; each
            forward is the next frame of a clip and rows whose cluster the previous frame had take its product, the
            others are computed exactly) or ``"both"`` (clusters within the pass, and those the previous frame had
            reuse its products). :meth:`reset` at a clip boundary; the memory held is one frame's cluster products.
        per_sample: cluster each sample of a batch on its own (a batch of frames then gives what batch-1
            inference gives); otherwise rows of the whole batch share clusters (Deep Reuse's batch clustering).
        norm_step: also bucket sub-vectors by norm (:func:`lsh_cluster`; beyond the paper); ``None``: sign bits only.
        gradient: ``dense`` (straight-through: the dense layer's gradients) or ``exact`` (the reuse product's own
            for fixed clusters; :class:`_StraightThrough`).
    """

    def __init__(
        self,
        dense: nn.Module,
        input_dim: int,
        hash_size: int,
        seed: int = 0,
        frames: str = "intra",
        per_sample: bool = False,
        norm_step: float | None = None,
        gradient: str = "dense",
    ):
        super().__init__()
        if gradient not in GRADIENTS:
            raise ConfigError(f"Reuse gradient must be one of {', '.join(GRADIENTS)}, got '{gradient}'.")
        if norm_step is not None and norm_step <= 0:
            raise ConfigError(f"Reuse norm_step must be > 0 or null, got {norm_step}.")
        _check_frames(frames)
        self.dense = dense
        self.input_dim, self.hash_size, self.seed, self.frames = input_dim, hash_size, seed, frames
        self.per_sample, self.norm_step, self.gradient = per_sample, norm_step, gradient
        self.register_buffer("planes", projections(input_dim, hash_size, seed), persistent=False)
        self.enabled = True
        self.last: list[Clusters] = []
        self.last_macs = (0, 0)  # (dense, reuse) multiply-accumulates of the last forward pass
        self.cache: dict = {}

    def reset(self) -> None:
        """Forget the previous frame (a clip boundary)."""
        self.cache = {}

    def redraw(self, seed: int | None = None) -> None:
        """Hash with the hyperplanes of generator seed ``seed`` from now on; ``None``: the layer's own (``self.seed``).

        The previous frame is forgotten (its keys came from the other hyperplanes).
        """
        planes = projections(self.input_dim, self.hash_size, self.seed if seed is None else seed)
        self.planes = planes.to(device=self.planes.device, dtype=self.planes.dtype)
        self.reset()

    @property
    def new_clusters(self) -> int | None:
        """Products multiplied in the last frame (inter-frame modes), ``None`` otherwise."""
        return self.cache.get("new") if self.frames != "intra" else None

    @property
    def compression_ratio(self) -> float | None:
        """CR of the last forward pass (all its row matrices together): products saved / sub-vectors."""
        if not self.last:
            return None
        computed = sum(c.products for c in self.last)
        total = sum(c.rows * c.blocks for c in self.last)
        return 1.0 - computed / max(total, 1)

    def matmul(self, rows: torch.Tensor, weight: torch.Tensor, samples: int = 1) -> torch.Tensor:
        self.last = []
        cache = self.cache if self.frames != "intra" else None
        out = reuse_matmul(rows, weight, self.planes, self.last, cache, self.frames,
                           samples if self.per_sample else 1, self.norm_step, self.gradient)  # fmt: skip
        macs_per_product = self.input_dim * weight.shape[1]
        self.last_macs = (
            sum(c.rows * c.blocks for c in self.last) * macs_per_product,
            sum(c.products for c in self.last) * macs_per_product,
        )
        return out


class ReuseLinear(ReuseLayer):
    """``nn.Linear`` on LSH centroids of its input rows (tokens, MLP inputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.dense(x)
        rows = x.reshape(-1, x.shape[-1])
        out = self.matmul(rows, self.dense.weight.T, x.shape[0] if x.dim() > 2 else rows.shape[0])
        if self.dense.bias is not None:
            out = out + self.dense.bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


class ReuseConv2d(ReuseLayer):
    """``nn.Conv2d`` (groups 1) through im2col: one row per receptive field, clustered, multiplied on centroids."""

    def __init__(self, dense: nn.Conv2d, *args, **kwargs):  # the arguments of ReuseLayer
        if dense.groups != 1 or dense.padding_mode != "zeros" or isinstance(dense.padding, str):
            raise ConfigError(
                f"ReuseConv2d needs an ungrouped convolution with numeric zero padding, got groups={dense.groups}, "
                f"padding={dense.padding!r}, padding_mode={dense.padding_mode!r}."
            )
        super().__init__(dense, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.dense
        if not self.enabled:
            return conv(x)
        n, _, h, w = x.shape
        cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (N, C*k*k, P)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        out = self.matmul(rows, conv.weight.reshape(conv.out_channels, -1).T, n)
        if conv.bias is not None:
            out = out + conv.bias
        oh = (h + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1
        ow = (w + 2 * conv.padding[1] - conv.dilation[1] * (conv.kernel_size[1] - 1) - 1) // conv.stride[1] + 1
        return out.reshape(n, oh * ow, -1).transpose(1, 2).reshape(n, -1, oh, ow)


def is_attention(module: nn.Module) -> bool:
    """Whether ``module`` is a multi-head attention this module can reuse.

    That is one with a ``qkv`` projection that computes through ``F.scaled_dot_product_attention`` when
    ``fused_attn`` is set (timm's ViT ``Attention``, Swin's ``WindowAttention``).
    """
    return (
        isinstance(getattr(module, "qkv", None), (nn.Linear, ReuseLinear))
        and hasattr(module, "num_heads")
        and hasattr(module, "fused_attn")
    )


def _padded(clusters: Clusters) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centroids per (sample, block), zero-padded, and where each sub-vector's centroid sits in them.

    Returns ``(S, B, U, L)`` centroids, ``(S, B, n)`` slots (``n`` rows per sample) and the centroid count of each
    (sample, block) ``(S, B)``.
    """
    if clusters.keys is None:
        raise ConfigError("Attention reuse needs hash_size + log2(blocks * heads * batch) <= 62 (packed keys).")
    samples, blocks = clusters.samples, clusters.blocks
    group = clusters.keys >> clusters.code_bits  # block * samples + sample, sorted
    rank = torch.arange(len(group), device=group.device) - torch.searchsorted(group, group)
    counts = torch.bincount(group, minlength=blocks * samples)
    padded = clusters.centroids.new_zeros(samples, blocks, int(counts.max()), clusters.centroids.shape[1])
    padded[group % samples, group // samples, rank] = clusters.centroids
    slots = rank[clusters.index].reshape(blocks, samples, -1).transpose(0, 1)
    return padded, slots, counts.reshape(blocks, samples).T


def lsh_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    planes: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
    is_causal: bool = False,
    norm_step: float | None = None,
) -> tuple[torch.Tensor, list[Clusters], tuple[int, int]]:
    r"""``softmax(Q Kᵀ · scale + mask) V`` with Q, K and V each clustered per head (and per sample) by LSH.

    Q, K and V ``(batch, heads, N, d)`` are split in sub-vectors of ``L`` like any reuse input; with
    :math:`\hat Q, \hat K, \hat V` their centroid reconstructions:
    :math:`S_{ij} = \sum_b (C^Q_b C^{K\top}_b)[\mathrm{id}^Q_b(i), \mathrm{id}^K_b(j)]` (one small product of
    centroids per block), softmax over the :math:`N` keys, and
    :math:`O = \sum_b (A P^V_b)\,C^V_b` with :math:`A P^V_b` the attention summed over each V cluster.
    Exactly ``softmax(Q̂K̂ᵀ) V̂``; the products run on centroids only.

    Returns the output, the three clusterings, and (dense, reuse) multiply-accumulates of the two products.
    """
    batch, heads, n, d = q.shape
    groups, input_dim = batch * heads, planes.shape[0]
    cq, ck, cv = (lsh_cluster(t.reshape(groups * t.shape[2], d), planes, groups, norm_step) for t in (q, k, v))
    pq, sq, nq = _padded(cq)
    pk, sk, nk = _padded(ck)
    pv, sv, nv = _padded(cv)
    n_k = k.shape[2]
    scores = pq @ pk.transpose(-1, -2)  # (S, B, Uq, Uk)
    scores = scores.gather(2, sq[..., None].expand(*sq.shape, scores.shape[3]))  # (S, B, N, Uk)
    scores = scores.gather(3, sk[:, :, None, :].expand(*sq.shape, n_k)).sum(1)  # (S, N, Nk)
    scores = scores.reshape(batch, heads, n, n_k) * (d**-0.5 if scale is None else scale)
    if is_causal:
        attn_mask = torch.ones(n, n_k, dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    attn = scores.softmax(-1).reshape(groups, 1, n, n_k).expand(groups, cv.blocks, n, n_k)
    summed = attn.new_zeros(groups, cv.blocks, n, pv.shape[2]).scatter_add_(
        3, sv[:, :, None, :].expand(groups, cv.blocks, n, n_k), attn
    )  # attention summed over each V cluster
    out = (summed @ pv).permute(0, 2, 1, 3).reshape(groups, n, cv.blocks * input_dim)[..., :d]
    dense = 2 * groups * n * n_k * cq.blocks * input_dim
    reuse = int(((nq * nk).sum() + n * nv.sum()) * input_dim)
    return out.reshape(batch, heads, n, d), [cq, ck, cv], (dense, reuse)


class _AttentionMode(TorchFunctionMode):
    """Routes ``F.scaled_dot_product_attention`` calls to the layer's :func:`lsh_attention`."""

    def __init__(self, layer: ReuseAttention) -> None:
        super().__init__()
        self.layer = layer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        return self.layer.attend(*args, **kwargs)


class ReuseAttention(ReuseLayer):
    """A multi-head attention (:func:`is_attention`) whose Q, K and V are clustered per head.

    The paper (§3) clusters Q, K and V because clustering the block input instead costs more accuracy. Its
    ``qkv`` and ``proj`` projections stay what they are (``to_reuse`` keeps ``qkv`` dense by default and may swap
    ``proj``). Intra-frame only: an attention row depends on every key of its own frame, so a previous frame's
    result is not reusable. ``dropout_p`` is not applied to the reuse path (inference and straight-through use).
    """

    def __init__(self, dense: nn.Module, *args, **kwargs):  # the arguments of ReuseLayer
        if not is_attention(dense):
            raise ConfigError(f"ReuseAttention wraps an attention with qkv, num_heads and fused_attn, got "
                              f"{type(dense).__name__}.")  # fmt: skip
        super().__init__(dense, *args, **kwargs)
        if self.frames != "intra":
            raise ConfigError(f"Attention reuse is intra-frame only, got frames='{self.frames}'.")

    def attend(self, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        """``F.scaled_dot_product_attention`` on LSH centroids, straight-through in backward."""
        if kwargs.pop("enable_gqa", False) or kwargs:
            raise ConfigError(f"Attention reuse does not support scaled_dot_product_attention's {sorted(kwargs)}.")
        with torch.no_grad():
            planes = self.planes.to(q.device)
            out, self.last, self.last_macs = lsh_attention(
                q.detach(), k.detach(), v.detach(), planes, attn_mask, scale, is_causal, self.norm_step
            )
        if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
            dense = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale=scale)
            return dense + (out - dense).detach()
        return out

    def forward(self, *args, **kwargs):
        if not self.enabled:
            return self.dense(*args, **kwargs)
        fused = self.dense.fused_attn
        self.dense.fused_attn = True
        try:
            with _AttentionMode(self):
                return self.dense(*args, **kwargs)
        finally:
            self.dense.fused_attn = fused


#: the settings a layer gets when the config does not name it
DEFAULT_LAYER = {"input_dim": 16, "hash_size": 8}


def dense_reason(module: nn.Module) -> str | None:
    """Why ``module`` stays dense, or ``None`` when it is swapped for a reuse layer."""
    if is_attention(module):
        return None
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"grouped convolution (groups={module.groups}): a row is a few channels, reuse does not pay"
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return "padding other than numeric zero padding"
        return None
    if isinstance(module, nn.Linear):
        return None
    return "not a Conv2d, Linear or attention layer"


#: why an attention's input projection stays dense unless the config names it
QKV_REASON = (
    "attention input projection: Q, K and V are clustered per head instead "
    "(clustering the block input costs more accuracy)"
)


def reuse_layer(dense: nn.Module, input_dim: int, hash_size: int, seed: int = 0, **options: Any) -> ReuseLayer:
    """The reuse layer of a ``Conv2d``, ``Linear`` or attention layer (a one-sentence error for any other).

    ``options``: :class:`ReuseLayer`'s ``frames``, ``per_sample``, ``norm_step`` and ``gradient`` (an attention is
    intra-frame and per sample whatever they say).
    """
    if is_attention(dense):
        options = {**options, "frames": "intra", "per_sample": True}
        return ReuseAttention(dense, input_dim, hash_size, seed, **options)
    if isinstance(dense, nn.Conv2d):
        return ReuseConv2d(dense, input_dim, hash_size, seed, **options)
    if isinstance(dense, nn.Linear):
        return ReuseLinear(dense, input_dim, hash_size, seed, **options)
    raise ConfigError(f"Reuse layers replace Conv2d, Linear and attention layers, got {type(dense).__name__}.")


def reusable(module: nn.Module) -> bool:
    """A layer :func:`to_reuse` considers: a ``Conv2d``, a ``Linear`` or an attention (:func:`is_attention`)."""
    return isinstance(module, (nn.Conv2d, nn.Linear)) or is_attention(module)


def to_reuse(
    model: nn.Module,
    layers: dict[str, dict[str, int | float]] | None = None,
    default: dict[str, int | float] | None = DEFAULT_LAYER,
    skip: tuple[str, ...] = (),
    seed: int = 0,
    frames: str = "intra",
    per_sample: bool = False,
    gradient: str = "dense",
) -> tuple[nn.Module, dict[str, str]]:
    """Swap the ``Conv2d`` (groups 1), ``Linear`` and attention layers of ``model`` for reuse layers, in place.

    Attention layers (timm ViT ``Attention``, Swin ``WindowAttention``) get :class:`ReuseAttention` (Q, K, V
    clustered per head, intra-frame whatever ``frames`` says); their ``qkv`` projection stays dense unless
    ``layers`` names it. Layer names are the model's own, before swapping.

    Args:
        model: any network.
        layers: module name -> ``{input_dim, hash_size}`` and optionally ``norm_step`` (the per-layer config
            ``hwnas lsh-tune`` writes).
        default: the settings of layers ``layers`` does not name; ``None`` swaps only the named ones.
        skip: names kept dense (e.g. the stem, the classifier).
        seed: projections of layer ``i`` (in ``named_modules`` order) are seeded with ``seed + i``.
        frames: ``"intra"``, ``"inter"`` or ``"both"`` (see :class:`ReuseLayer`).
        per_sample: cluster each sample of a batch on its own (see :class:`ReuseLayer`).
        gradient: ``dense`` or ``exact`` (see :class:`ReuseLayer`).

    Returns:
        the model and ``{name: reason}`` of the layers left dense.

    Raises:
        ConfigError: when ``layers`` names a module that is not in the model or cannot be reused.
    """
    layers = dict(layers or {})
    _check_frames(frames)  # here too: attention layers alone would not check it
    modules = list(model.named_modules())
    unknown = [n for n in layers if n not in dict(modules)]
    if unknown:
        raise ConfigError(f"Reuse config names '{unknown[0]}', which is not a module of the model.")
    soft = {f"{n}.qkv": QKV_REASON for n, m in modules if is_attention(m)}
    dense: dict[str, str] = {}
    swaps = []
    for i, (name, module) in enumerate(modules):
        if not reusable(module) or isinstance(module, ReuseLayer):
            continue
        reason = dense_reason(module) if name else "the model itself: to_reuse swaps layers inside a container"
        if name in layers and reason is not None:
            raise ConfigError(f"Reuse config names '{name}', which cannot be reused: {reason}.")
        settings = layers.get(name, None if name in skip or name in soft else default)
        if reason is not None or settings is None:
            dense[name] = reason or soft.get(name, "kept dense by the config")
            continue
        swaps.append((name, module, settings, seed + i))
    for name, module, settings, layer_seed in sorted(swaps, key=lambda t: -t[0].count(".")):  # children first
        norm_step = settings.get("norm_step")
        layer = reuse_layer(module, int(settings["input_dim"]), int(settings["hash_size"]), layer_seed, frames=frames,
                            per_sample=per_sample, norm_step=None if norm_step is None else float(norm_step),
                            gradient=gradient)  # fmt: skip
        _set_module(model, name, layer)
    return model, dense


def from_reuse(model: nn.Module) -> nn.Module:
    """The dense model back: every reuse layer replaced by the layer it wraps (the same parameters)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, ReuseLayer)]
    for name, module in sorted(found, key=lambda t: -t[0].count(".")):  # children first: their names still hold
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
    :math:`\mathrm{CR} = 1 - \sum \text{products multiplied} / \sum \text{sub-vectors}` and MACs saved
    over the dense MACs of those layers: :math:`(\text{sub-vectors} - \text{products})\,L\,K` of
    :math:`\text{sub-vectors}\,L\,K` for a convolution or linear layer (:math:`K` output features); for an
    attention, :math:`2 S N^2 d` dense against :math:`\sum (U_Q U_K + N U_V) L` (:func:`lsh_attention`).
    Sums reduce over DDP.
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
            for clusters in layer.last:
                self.centroids += clusters.products
                self.subvectors += clusters.rows * clusters.blocks
            dense, reuse = layer.last_macs
            self.macs_saved += dense - reuse
            self.macs += dense

    def compute(self) -> dict[str, torch.Tensor]:
        return {
            "compression_ratio": 1.0 - self.centroids / self.subvectors.clamp_min(1.0),
            "macs_saved": self.macs_saved,
            "macs_saved_fraction": self.macs_saved / self.macs.clamp_min(1.0),
        }


class ReuseTransform(ModelTransform):
    """``transforms: [ReuseTransform]`` in a module's config: :func:`to_reuse` on the built network.

    Args: as :func:`to_reuse` (``layers``, ``default``, ``skip``, ``seed``, ``frames``, ``per_sample``,
    ``gradient``).
    """

    def __init__(
        self,
        layers: dict[str, dict[str, int | float]] | None = None,
        default: dict[str, int | float] | None = None,
        skip: tuple[str, ...] = (),
        seed: int = 0,
        frames: str = "intra",
        per_sample: bool = False,
        gradient: str = "dense",
    ) -> None:
        self.layers, self.default = layers, dict(DEFAULT_LAYER) if default is None else default
        self.skip, self.seed, self.frames, self.per_sample = tuple(skip), seed, frames, per_sample
        self.gradient = gradient
        self.dense_layers: dict[str, str] = {}

    def apply(self, net: nn.Module) -> nn.Module:
        net, self.dense_layers = to_reuse(
            net, self.layers, self.default, self.skip, self.seed, self.frames, self.per_sample, self.gradient
        )
        return net
