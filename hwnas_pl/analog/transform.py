"""The analog model transform: any network onto aihwkit's pure-torch tiles, HWA-trained (thesis ch. 5, §5.3.2).

``transforms: [{class_path: hwnas_pl.analog.AnalogTransform, init_args: {preset: analognas}}]`` on any module maps
its network's Linear/Conv layers onto tiles (:func:`~hwnas_pl.analog.conversion.to_analog`) and follows the training:

- during the first ``digital_epochs`` epochs the tiles run in plain floating point (no non-idealities, input
  ranges bypassed: :func:`~hwnas_pl.analog.inference.bypass_input_ranges`); afterwards weight noise, DAC/ADC
  quantization, output noise, weight clipping and learned input ranges (initialised from the first HWA batches)
  apply (HWA);
- the weights at that switch (or those of ``digital_checkpoint``) are kept as the *digital* reference, which
  :class:`~hwnas_pl.callbacks.DriftEvaluation` maps to analog for inference only
  (:func:`~hwnas_pl.analog.inference.map_for_inference`);
- aihwkit's learned input ranges and output scales are excluded from weight decay (:meth:`no_weight_decay`);
- after each optimiser step the tiles run their post-update step (clipping, remapping) unless the optimiser is
  aihwkit's (``AnalogSGD`` does it itself);
- under DDP the tiles' data-initialised input ranges are averaged over ranks until their initialisation ends;
- checkpoints hold the tiles without their configuration objects (``weights_only`` loading) and the digital
  reference (``checkpoint["digital_state"]``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from aihwkit.optim.analog_optimizer import AnalogOptimizerMixin
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from hwnas_pl.analog.conversion import plain_state_dict, restore_rpu_configs, set_tile_config, to_analog
from hwnas_pl.analog.inference import bypass_input_ranges, periphery_parameter_names, restart_input_ranges
from hwnas_pl.analog.presets import RPU_OVERRIDES, make_rpu_config, resolve_preset, training_free_config
from hwnas_pl.checkpoint import check_state_dict_matches, read_weights
from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.transforms import ModelTransform


def load_backbone_weights(net: torch.nn.Module, path: str | Path) -> None:
    """Load the ``net.*`` weights of a :class:`~hwnas_pl.modules.ClassifierModule` checkpoint into the digital ``net``.

    Raises:
        ConfigError: when the file is missing or unreadable, or holds no weights of this shape.
    """
    source = f"digital_checkpoint '{path}'"
    weights, writer = read_weights(path, "net.", source, "a checkpoint of a ClassifierModule")
    check_state_dict_matches(net, weights, source=source, writer=writer)
    net.load_state_dict(weights)


class AnalogTransform(ModelTransform):
    """Map a network onto analog tiles and train it hardware-aware (see the module docstring).

    Args:
        preset: an analog preset (:func:`~hwnas_pl.analog.presets.list_analog_presets`).
        tile_size, weight_noise, clip, dac_bits, adc_bits, out_noise, g_max, digital_bias: override the preset
            (:func:`~hwnas_pl.analog.presets.make_rpu_config`).
        digital_checkpoint: a ClassifierModule checkpoint whose network weights start the training (HWA
            fine-tuning).
        digital_epochs: floating-point epochs before HWA training starts (digital pre-training).
    """

    def __init__(
        self,
        preset: str = "standard_hwa_torch",
        tile_size: int | None = None,
        weight_noise: float | None = None,
        clip: float | None = None,
        dac_bits: int | None = None,
        adc_bits: int | None = None,
        out_noise: float | None = None,
        g_max: float | None = None,
        digital_bias: bool | None = None,
        digital_checkpoint: str | None = None,
        digital_epochs: int = 0,
    ) -> None:
        if digital_epochs < 0:
            raise ConfigError(f"digital_epochs must be 0 or more, got {digital_epochs}.")
        overrides = dict(zip(RPU_OVERRIDES, (tile_size, weight_noise, clip, dac_bits, adc_bits, out_noise, g_max,
                                             digital_bias)))  # fmt: skip
        preset = resolve_preset(preset)
        self.rpu_config = make_rpu_config(preset, **overrides)
        self.preset, self.digital_epochs, self.digital_checkpoint = preset, digital_epochs, digital_checkpoint
        #: weights of the digitally trained network (analog state-dict keys), the reference for drift comparisons
        self.digital_state: dict[str, torch.Tensor] | None = None
        self.digital_layers: dict[str, str] = {}
        self.phase: str | None = None
        self._input_ranges_synced = False

    def apply(self, net: nn.Module) -> nn.Module:
        if self.digital_checkpoint is not None:
            load_backbone_weights(net, self.digital_checkpoint)
        analog, self.digital_layers = to_analog(net, self.rpu_config)
        if self.digital_checkpoint is not None:
            self.digital_state = copy.deepcopy(analog.state_dict())
        return analog

    # ------------------------------------------------------------------ phases
    def hwa_active(self, module: Any) -> bool:
        """Whether HWA training applies in the module's current epoch."""
        return module.current_epoch >= self.digital_epochs

    def set_phase(self, module: Any, phase: str) -> None:
        """``"digital"`` (plain floating point on the tiles) or ``"hwa"``."""
        if phase != self.phase:
            set_tile_config(module.net, self.rpu_config if phase == "hwa" else training_free_config(self.rpu_config))
            if phase == "digital":
                bypass_input_ranges(module.net)
            self.phase = phase

    def no_weight_decay(self, net: nn.Module) -> set[str]:
        """The tiles' learned input ranges and output scales (:func:`~.inference.periphery_parameter_names`)."""
        return periphery_parameter_names(net)

    def on_fit_start(self, module: Any) -> None:
        digital = "; ".join(f"{k}: {v}" for k, v in self.digital_layers.items()) or "none"
        tiles = module.net.analog_tile_count()
        rank_zero_info(f"Analog ({self.preset}): {tiles} tiles; layers kept digital: {digital}.")

    def on_train_epoch_start(self, module: Any) -> None:
        if self.hwa_active(module):
            if self.phase == "digital" or (self.digital_epochs > 0 and self.digital_state is None):
                self.digital_state = copy.deepcopy(module.net.state_dict())
                module.net.remap_analog_weights()  # map the trained weights onto the tiles' full range
                restart_input_ranges(module.net)  # initialised from the first HWA batches, as aihwkit does
                self._input_ranges_synced = False  # ... and averaged over DDP ranks until then
            self.set_phase(module, "hwa")
        else:
            self.set_phase(module, "digital")

    def on_validation_start(self, module: Any) -> None:
        self.set_phase(module, "hwa" if self.hwa_active(module) else "digital")

    def on_test_start(self, module: Any) -> None:
        self.set_phase(module, "hwa")

    def after_optimizer_step(self, module: Any, optimizer: Any) -> None:
        inner = getattr(optimizer, "optimizer", optimizer)
        if not isinstance(inner, AnalogOptimizerMixin):  # AnalogSGD/AnalogAdam run it themselves
            for tile in module.net.analog_tiles():
                tile.post_update_step()
        self._sync_input_ranges(module)

    def _sync_input_ranges(self, module: Any) -> None:
        """Under DDP, average the tiles' input ranges over ranks while aihwkit initialises them from data.

        aihwkit sets each tile's input range from the statistics of its first ``init_from_data`` training batches,
        which differ between ranks; gradients are all-reduced after that, so unequal starting values would never
        meet again. One small all-reduce per step until every tile has finished its initialisation.
        """
        if self._input_ranges_synced or module.trainer.world_size == 1:
            return
        tiles = [t for t in module.net.analog_tiles() if getattr(t, "input_range", None) is not None]
        if tiles:
            ranges = module.trainer.strategy.reduce(torch.cat([t.input_range.data for t in tiles]), reduce_op="mean")
            for tile, value in zip(tiles, ranges):
                tile.input_range.data.fill_(value)
        self._input_ranges_synced = all(
            t.input_range_update_idx.item() >= t.rpu_config.pre_post.input_range.init_from_data for t in tiles
        )

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, module: Any, checkpoint: dict[str, Any]) -> None:
        # tile configurations are objects; leaving them out keeps the checkpoint loadable with weights_only=True
        checkpoint["state_dict"] = plain_state_dict(checkpoint["state_dict"])
        if self.digital_state is not None:
            checkpoint["digital_state"] = plain_state_dict(self.digital_state)

    def on_load_checkpoint(self, module: Any, checkpoint: dict[str, Any]) -> None:
        restore_rpu_configs(checkpoint["state_dict"], module.net, prefix="net.")
        if "digital_state" in checkpoint:
            self.digital_state = checkpoint["digital_state"]
            restore_rpu_configs(self.digital_state, module.net)
