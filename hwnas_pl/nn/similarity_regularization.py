r"""Similarity regularizers of SA-training ("Treasure What You Have" §3.2, Eq. 1-2), as loss terms.

Both terms turn a layer's output into a distribution the same way (the paper leaves it open): each sample's
feature map is flattened and passed through a softmax with temperature :math:`T`,
:math:`p(f) = \operatorname{softmax}(\operatorname{flatten}(f) / T)`, and
:math:`D_{KL}(p \,\|\, q) = \sum_k p_k (\log p_k - \log q_k)`, averaged over the samples of the batch.

- :class:`IntraFrameSimilarity` (Eq. 1): :math:`r = \sum_i D_{KL}(p(f_i) \,\|\, p(\mu_i))`, with :math:`\mu_i` the
  mean feature map of layer :math:`i` over the training data: a running mean (cumulative, or exponential with
  ``momentum``) of the detached batch means, summed over DDP ranks before it is updated, kept in buffers (so in
  checkpoints).
- :class:`InterFrameSimilarity` (Eq. 2): :math:`r_t = \sum_{(i,j)} \lambda_{ij} D_{KL}(p(FM_{i,t}) \,\|\,
  p(FM_{j,t+1}))` over consecutive frames. The pairs default to each layer with itself (the printed equation pairs
  layers :math:`i < j`, whose shapes differ; a cross-layer pair pools both maps to the smaller shape). Frames come
  as the task flattens clips: ``(B, L, ...)`` inputs are ``B·L`` consecutive maps, clip by clip; the
  ``frame_threshold`` is the number of consecutive frames of a clip the term spans.

With ``weight`` :math:`\lambda` (0.001, the paper) and :math:`\lambda_t`, the module trains on
:math:`L_{task} + \lambda r + \lambda_t r_t` (:mod:`hwnas_pl.nn.loss_terms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.loss_terms import FeatureLossTerm


def feature_log_distribution(features: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``(N, ...)`` feature maps -> ``(N, K)`` log-probabilities: softmax of each flattened map over ``T``."""
    return F.log_softmax(features.reshape(features.shape[0], -1).float() / temperature, dim=1)


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    r""":math:`D_{KL}(p \| q) = \sum_k p_k (\log p_k - \log q_k)`, averaged over rows.

    ``log_p`` and ``log_q`` are ``(N, K, ...)`` log-probabilities over dimension 1 (``log_q`` may broadcast); the
    mean runs over every other position (samples, and pixels of per-pixel distributions).
    """
    return (log_p.exp() * (log_p - log_q)).sum(1).mean()


def pool_to(features: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``(N, C, H, W)`` or ``(N, C)`` maps average-pooled to ``shape`` (channels included)."""
    if features.shape[1:] == tuple(shape):
        return features
    if features.dim() == 4:
        return F.adaptive_avg_pool3d(features.unsqueeze(1), tuple(shape)).squeeze(1)
    if features.dim() == 2:
        return F.adaptive_avg_pool1d(features.unsqueeze(1), shape[0]).squeeze(1)
    raise ConfigError(f"Cross-layer similarity pools (N, C) or (N, C, H, W) maps, got shape {tuple(features.shape)}.")


def _check_temperature(name: str, temperature: float) -> float:
    if temperature <= 0:
        raise ConfigError(f"Loss term '{name}' needs temperature > 0, got {temperature}.")
    return float(temperature)


class IntraFrameSimilarity(FeatureLossTerm):
    r"""Eq. 1: :math:`r = \sum_i D_{KL}(p(f_i) \| p(\mu_i))` over ``layers`` (module docstring).

    Args:
        layers: names in ``module.net.named_modules()``.
        temperature: :math:`T` of the softmax that makes a feature map a distribution.
        momentum: ``None``: :math:`\mu_i` is the cumulative mean over every training batch seen; a float in (0, 1]:
            an exponential mean, :math:`\mu \leftarrow (1 - m)\mu + m\,\bar f`.
        name: logged as ``train/<name>``.
        weight: :math:`\lambda` (the paper: 0.001).
    """

    def __init__(
        self,
        layers: Sequence[str],
        temperature: float = 1.0,
        momentum: float | None = None,
        name: str = "intra_frame_similarity",
        weight: float = 1e-3,
    ) -> None:
        super().__init__(layers, name, weight)
        self.temperature = _check_temperature(name, temperature)
        if momentum is not None and not 0 < momentum <= 1:
            raise ConfigError(f"Loss term '{name}' needs momentum in (0, 1] or null, got {momentum}.")
        self.momentum = momentum
        self.register_buffer("samples", torch.zeros((), dtype=torch.float64))
        for i in range(len(self.layers)):
            self.register_buffer(f"mean_{i}", torch.zeros(0))

    def mean(self, layer: str) -> torch.Tensor:
        r""":math:`\mu` of ``layer`` (one map; empty before the first training batch)."""
        return getattr(self, f"mean_{self.layers.index(layer)}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for i in range(len(self.layers)):  # the means' shapes are known once a batch was seen: take the saved ones
            key = f"{prefix}mean_{i}"
            if key in state_dict:
                setattr(self, f"mean_{i}", torch.empty_like(state_dict[key], device=self.samples.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def update_means(self, maps: Sequence[torch.Tensor]) -> None:
        """Fold this step's feature maps of ``layers`` (summed over DDP ranks) into the running means."""
        sums = [m.detach().float().sum(0) for m in maps]
        count = torch.tensor(float(maps[0].shape[0]), device=sums[0].device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flat = torch.cat([s.reshape(-1) for s in sums] + [count.reshape(1)])
            torch.distributed.all_reduce(flat)
            parts = flat[:-1].split([s.numel() for s in sums])
            sums, count = [p.reshape(s.shape) for p, s in zip(parts, sums)], flat[-1]
        for i, total in enumerate(sums):
            mean, batch_mean = getattr(self, f"mean_{i}"), total / count
            if mean.shape != batch_mean.shape:
                mean = torch.zeros_like(batch_mean)
                seen = 0.0
            else:
                seen = float(self.samples)
            if self.momentum is None:
                new = mean + (batch_mean - mean) * (float(count) / (seen + float(count)))
            else:
                new = batch_mean if seen == 0 else mean + self.momentum * (batch_mean - mean)
            setattr(self, f"mean_{i}", new)
        self.samples += float(count)

    def forward(self, module: nn.Module, batch: Any, outputs: torch.Tensor) -> torch.Tensor:
        maps = [self.feature(n) for n in self.layers]
        self.update_means(maps)
        total = outputs.new_zeros((), dtype=torch.float32)
        for i, fmap in enumerate(maps):
            log_p = feature_log_distribution(fmap, self.temperature)
            log_mu = feature_log_distribution(getattr(self, f"mean_{i}")[None], self.temperature)
            total = total + kl_divergence(log_p, log_mu)
        return total


class InterFrameSimilarity(FeatureLossTerm):
    r"""Eq. 2: :math:`r_t = \sum_{(i,j)} \lambda_{ij} D_{KL}(p(FM_{i,t}) \| p(FM_{j,t+1}))` (module docstring).

    Args:
        layers: names in ``module.net.named_modules()``; each is paired with itself (:math:`\lambda_{ii} = 1`)
            unless ``pairs`` is given.
        pairs: ``[[layer_i, layer_j, lambda_ij], ...]`` (cross-layer pairs pool to the smaller shape); their
            layers must be in ``layers``.
        frames: frames per clip when the batch does not say (inputs ``(B, L, ...)`` say ``L``); ``2`` for pairs.
        frame_threshold: consecutive frames of a clip the term spans (pairs ``(t, t+1)`` for ``t + 1 < threshold``);
            ``None``: the whole clip.
        temperature: :math:`T` of the softmax that makes a feature map a distribution.
        name: logged as ``train/<name>``.
        weight: :math:`\lambda_t` (the paper does not give it).
    """

    def __init__(
        self,
        layers: Sequence[str],
        pairs: Sequence[Sequence[Any]] | None = None,
        frames: int = 2,
        frame_threshold: int | None = None,
        temperature: float = 1.0,
        name: str = "inter_frame_similarity",
        weight: float = 1e-3,
    ) -> None:
        super().__init__(layers, name, weight)
        self.temperature = _check_temperature(name, temperature)
        self.pairs = [(str(a), str(b), float(w)) for a, b, w in pairs] if pairs else [(n, n, 1.0) for n in layers]
        outside = [n for a, b, _ in self.pairs for n in (a, b) if n not in self.layers]
        if outside:
            raise ConfigError(
                f"Loss term '{name}' pairs layer '{outside[0]}', which is not in its layers {self.layers}."
            )
        if frames < 2 or (frame_threshold is not None and frame_threshold < 2):
            raise ConfigError(f"Loss term '{name}' needs frames >= 2 and frame_threshold >= 2 (or null), got "
                              f"{frames} and {frame_threshold}.")  # fmt: skip
        self.frames, self.frame_threshold = int(frames), frame_threshold

    def clip_length(self, batch: Any) -> int:
        """Frames per clip: ``L`` of ``(B, L, C, H, W)`` inputs, else ``frames``."""
        x = batch["image"] if isinstance(batch, dict) else batch[0] if isinstance(batch, (list, tuple)) else batch
        return int(x.shape[1]) if isinstance(x, torch.Tensor) and x.dim() == 5 else self.frames

    def forward(self, module: nn.Module, batch: Any, outputs: torch.Tensor) -> torch.Tensor:
        length = self.clip_length(batch)
        span = length if self.frame_threshold is None else min(length, self.frame_threshold)
        total = outputs.new_zeros((), dtype=torch.float32)
        for a, b, lam in self.pairs:
            fa, fb = self.feature(a), self.feature(b)
            if fa.shape[0] % length:
                raise ConfigError(f"Loss term '{self.name}' got {fa.shape[0]} maps of '{a}', not clips of {length} "
                                  "frames.")  # fmt: skip
            if fa.shape[1:] != fb.shape[1:]:
                shape = [min(x, y) for x, y in zip(fa.shape[1:], fb.shape[1:])]
                fa, fb = pool_to(fa, shape), pool_to(fb, shape)
            fa = fa.reshape(-1, length, *fa.shape[1:])[:, : span - 1]  # frames t
            fb = fb.reshape(-1, length, *fb.shape[1:])[:, 1:span]  # frames t + 1
            log_p = feature_log_distribution(fa.reshape(-1, *fa.shape[2:]), self.temperature)
            log_q = feature_log_distribution(fb.reshape(-1, *fb.shape[2:]), self.temperature)
            total = total + lam * kl_divergence(log_p, log_q)
        return total
