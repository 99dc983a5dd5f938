"""LSH clusters refreshed during SA-training ("Treasure What You Have", Algorithm 1 and §3.2).

Algorithm 1 hashes once per epoch ("apply LSH; store rows and cluster ids"); the text says clustering happens at
every iteration. Both are offered as ``every: epoch | step``. The reading: what is refreshed is the hash functions
(each reuse layer's random hyperplanes), drawn anew at each epoch or step; the cluster ids are always those of the
current feature maps, since storing ids per sample would hold the dataset's rows × sub-vectors per layer. With
fixed hyperplanes (no callback) the network can fit one hash's boundaries; redrawn ones train it for clustering in
general.

Validation, testing and inference use each layer's own hyperplanes (its ``seed``, as :func:`to_reuse` gave it), so
a checkpoint and its config give the measured accuracy. The hyperplanes of a refresh are a function of the layer's
seed and the epoch or global step, so a run resumed from a checkpoint draws what the uninterrupted run drew.
"""

from __future__ import annotations

import lightning.pytorch as pl

from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.reuse import ReuseLayer

EVERY = ("epoch", "step")


class LSHRefresh(pl.Callback):
    """Redraw every reuse layer's LSH hyperplanes at each training epoch or step (module docstring).

    Args:
        every: ``"epoch"`` (Algorithm 1) or ``"step"`` (§3.2's every iteration).
        seed: added to each layer's seed; refresh ``k`` (the epoch or the global step) of a layer with seed ``s``
            draws with generator seed ``s + seed + 1_000_003 (k + 1)``.
    """

    def __init__(self, every: str = "epoch", seed: int = 0) -> None:
        if every not in EVERY:
            raise ConfigError(f"LSHRefresh every must be one of {', '.join(EVERY)}, got '{every}'.")
        self.every, self.seed = every, seed
        self.count: int | None = None  # the refresh the training layers hold, None: their own hyperplanes

    @staticmethod
    def _layers(pl_module: pl.LightningModule) -> list[ReuseLayer]:
        return [m for m in pl_module.modules() if isinstance(m, ReuseLayer)]

    def _draw(self, pl_module: pl.LightningModule, count: int | None) -> None:
        for layer in self._layers(pl_module):
            layer.redraw(None if count is None else layer.seed + self.seed + 1_000_003 * (count + 1))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and not self._layers(pl_module):
            raise ConfigError("LSHRefresh found no reuse layer in the model; add a ReuseTransform to its transforms.")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every == "epoch":
            self.count = trainer.current_epoch
            self._draw(pl_module, self.count)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if self.every == "step":
            self.count = trainer.global_step
            self._draw(pl_module, self.count)
        elif self.count != trainer.current_epoch:  # back from a validation inside the epoch
            self.count = trainer.current_epoch
            self._draw(pl_module, self.count)

    def _own(self, pl_module: pl.LightningModule) -> None:
        if self.count is not None:
            self.count = None
            self._draw(pl_module, None)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._own(pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._own(pl_module)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._own(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._own(pl_module)
