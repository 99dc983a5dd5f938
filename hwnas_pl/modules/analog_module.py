"""Hardware-aware (HWA) training of any classifier network on aihwkit analog tiles (thesis ch. 5, AnalogNAS §5.3.2)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from aihwkit.optim import AnalogSGD
from aihwkit.optim.analog_optimizer import AnalogOptimizerMixin
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from hwnas_pl.analog import make_rpu_config, set_tile_config, to_analog, training_free_config
from hwnas_pl.analog.conversion import plain_state_dict, restore_rpu_configs
from hwnas_pl.checkpoint import check_state_dict_matches
from hwnas_pl.errors import ConfigError
from hwnas_pl.modules.classifier_module import BackboneFactory, ClassifierModule


def load_backbone_weights(net: torch.nn.Module, path: str | Path) -> None:
    """Load the ``net.*`` weights of a :class:`ClassifierModule` checkpoint into the digital ``net``.

    Raises:
        ConfigError: when the file is missing or unreadable, or holds no weights of this shape.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"digital_checkpoint '{path}' does not exist; expected a checkpoint of a ClassifierModule.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any failure to read is the same user error
        raise ConfigError(f"digital_checkpoint '{path}' could not be read as a checkpoint ({err}).") from None
    weights = {k[len("net.") :]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("net.")}
    writer = (ckpt.get("hyper_parameters") or {}).get("_class_path")
    check_state_dict_matches(net, weights, source=f"digital_checkpoint '{path}'", writer=writer)
    net.load_state_dict(weights)


class AnalogModule(ClassifierModule):
    """A classifier trained hardware-aware on analog tiles, from scratch or from a digital checkpoint.

    The digital network (any backbone :class:`ClassifierModule` takes) is converted with aihwkit: every
    Linear/Conv layer goes onto tiles configured by ``preset`` and the overrides below; layers the tiles cannot
    hold stay digital and are listed when training starts. During the first ``digital_epochs`` epochs the tiles
    run without non-idealities (floating-point training of the same network); afterwards weight noise, DAC/ADC
    quantization, output noise and weight clipping apply (HWA training). The weights at that switch (or those of
    ``digital_checkpoint``) are kept as the *digital* reference, which
    :class:`~hwnas_pl.callbacks.DriftEvaluation` maps to analog for inference only.

    Any torch optimizer works: after each step the tiles run their post-update step (clipping, remapping), which is
    what aihwkit's ``AnalogSGD`` (the default) adds to SGD.

    Args:
        backbone: see :func:`~hwnas_pl.modules.classifier_module.build_backbone`.
        num_classes: number of classes (linked from the DataModule by the CLI).
        input_shape: (channels, height, width) of one sample (linked from the DataModule by the CLI).
        preset: an analog preset (:func:`~hwnas_pl.analog.presets.list_analog_presets`).
        tile_size, weight_noise, clip, dac_bits, adc_bits, out_noise, g_max: override the preset
            (:func:`~hwnas_pl.analog.presets.make_rpu_config`).
        digital_checkpoint: a ClassifierModule checkpoint whose network weights start the training (HWA
            fine-tuning).
        digital_epochs: floating-point epochs before HWA training starts (digital pre-training).
        optimizer, scheduler, label_smoothing: as in :class:`ClassifierModule`.
    """

    def __init__(
        self,
        backbone: str | BackboneFactory = "small_cnn",
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        preset: str = "standard_hwa",
        tile_size: int | None = None,
        weight_noise: float | None = None,
        clip: float | None = None,
        dac_bits: int | None = None,
        adc_bits: int | None = None,
        out_noise: float | None = None,
        g_max: float | None = None,
        digital_checkpoint: str | None = None,
        digital_epochs: int = 0,
        optimizer: OptimizerCallable = AnalogSGD,
        scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(backbone, num_classes, input_shape, optimizer, scheduler, label_smoothing)
        self.save_plain_hyperparameters()
        if digital_epochs < 0:
            raise ConfigError(f"digital_epochs must be 0 or more, got {digital_epochs}.")
        self.rpu_config = make_rpu_config(preset, tile_size, weight_noise, clip, dac_bits, adc_bits, out_noise, g_max)
        self.preset = preset
        self.digital_epochs = digital_epochs
        if digital_checkpoint is not None:
            load_backbone_weights(self.net, digital_checkpoint)
        self.net, self.digital_layers = to_analog(self.net, self.rpu_config)
        #: weights of the digitally trained network (analog state-dict keys), the reference for drift comparisons
        self.digital_state: dict[str, torch.Tensor] | None = None
        if digital_checkpoint is not None:
            self.digital_state = copy.deepcopy(self.net.state_dict())
        self._phase: str | None = None
        self._input_ranges_synced = False

    # ------------------------------------------------------------------ phases
    def hwa_active(self) -> bool:
        """Whether HWA training applies in the current epoch."""
        return self.current_epoch >= self.digital_epochs

    def _set_phase(self, phase: str) -> None:
        if phase != self._phase:
            set_tile_config(self.net, self.rpu_config if phase == "hwa" else training_free_config(self.rpu_config))
            self._phase = phase

    @override
    def on_fit_start(self) -> None:
        n_tiles = self.net.analog_tile_count()
        digital = "; ".join(f"{k}: {v}" for k, v in self.digital_layers.items()) or "none"
        rank_zero_info(f"Analog ({self.preset}): {n_tiles} tiles; layers kept digital: {digital}.")

    @override
    def on_train_epoch_start(self) -> None:
        if self.hwa_active():
            if self._phase == "digital" or (self.digital_epochs > 0 and self.digital_state is None):
                self.digital_state = copy.deepcopy(self.net.state_dict())
                self.net.remap_analog_weights()  # map the trained weights onto the tiles' full range
            self._set_phase("hwa")
        else:
            self._set_phase("digital")

    @override
    def on_validation_start(self) -> None:
        self._set_phase("hwa" if self.hwa_active() else "digital")

    @override
    def on_test_start(self) -> None:
        self._set_phase("hwa")

    @override
    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        inner = getattr(optimizer, "optimizer", optimizer)
        if not isinstance(inner, AnalogOptimizerMixin):  # AnalogSGD/AnalogAdam run it themselves
            for tile in self.net.analog_tiles():
                tile.post_update_step()
        self._sync_input_ranges()

    def _sync_input_ranges(self) -> None:
        """Under DDP, average the tiles' input ranges over ranks while aihwkit initialises them from data.

        aihwkit sets each tile's input range from the statistics of its first ``init_from_data`` training batches,
        which differ between ranks; gradients are all-reduced after that, so unequal starting values would never
        meet again. One small all-reduce per step until every tile has finished its initialisation.
        """
        if self._input_ranges_synced or self.trainer.world_size == 1:
            return
        tiles = [t for t in self.net.analog_tiles() if getattr(t, "input_range", None) is not None]
        if tiles:
            ranges = self.trainer.strategy.reduce(torch.cat([t.input_range.data for t in tiles]), reduce_op="mean")
            for tile, value in zip(tiles, ranges):
                tile.input_range.data.fill_(value)
        self._input_ranges_synced = all(
            t.input_range_update_idx.item() >= t.rpu_config.pre_post.input_range.init_from_data for t in tiles
        )

    # ------------------------------------------------------------------ checkpoints
    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # tile configurations are objects; leaving them out keeps the checkpoint loadable with weights_only=True
        checkpoint["state_dict"] = plain_state_dict(checkpoint["state_dict"])
        if self.digital_state is not None:
            checkpoint["digital_state"] = plain_state_dict(self.digital_state)

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        restore_rpu_configs(checkpoint["state_dict"], self.net, prefix="net.")
        if "digital_state" in checkpoint:
            self.digital_state = checkpoint["digital_state"]
            restore_rpu_configs(self.digital_state, self.net)
