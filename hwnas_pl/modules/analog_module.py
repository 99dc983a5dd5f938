"""Hardware-aware (HWA) training of any classifier network on aihwkit analog tiles (thesis ch. 5, AnalogNAS §5.3.2).

:class:`AnalogModule` is :class:`~hwnas_pl.modules.ClassifierModule` with one model transform,
:class:`~hwnas_pl.analog.transform.AnalogTransform`, built from its arguments: the same YAML keeps working, and
``ClassifierModule(transforms=[AnalogTransform(...)])`` (or any other module with that transform) trains the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from aihwkit.optim import AnalogSGD
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from hwnas_pl.analog.transform import AnalogTransform, load_backbone_weights
from hwnas_pl.modules.classifier_module import BackboneFactory, ClassifierModule
from hwnas_pl.nn.loss_terms import LossTerm
from hwnas_pl.nn.transforms import ModelTransform

__all__ = ["AnalogModule", "load_backbone_weights"]


class AnalogModule(ClassifierModule):
    """A classifier trained hardware-aware on analog tiles, from scratch or from a digital checkpoint.

    The digital network (any backbone :class:`ClassifierModule` takes) is converted with aihwkit: every
    Linear/Conv layer goes onto tiles configured by ``preset`` and the overrides below; layers the tiles cannot
    hold stay digital and are listed when training starts. During the first ``digital_epochs`` epochs the tiles
    run without non-idealities (floating-point training of the same network); afterwards weight noise, DAC/ADC
    quantization, output noise and weight clipping apply (HWA training). See
    :class:`~hwnas_pl.analog.transform.AnalogTransform`, which does the work.

    Any torch optimizer works: after each step the tiles run their post-update step (clipping, remapping), which is
    what aihwkit's ``AnalogSGD`` (the default) adds to SGD.

    Args:
        backbone: see :func:`~hwnas_pl.modules.classifier_module.build_backbone`.
        num_classes: number of classes (linked from the DataModule by the CLI).
        input_shape: (channels, height, width) of one sample (linked from the DataModule by the CLI).
        preset: an analog preset (:func:`~hwnas_pl.analog.presets.list_analog_presets`).
        tile_size, weight_noise, clip, dac_bits, adc_bits, out_noise, g_max, digital_bias: override the preset
            (:func:`~hwnas_pl.analog.presets.make_rpu_config`).
        digital_checkpoint: a ClassifierModule checkpoint whose network weights start the training (HWA
            fine-tuning).
        digital_epochs: floating-point epochs before HWA training starts (digital pre-training).
        optimizer, scheduler, label_smoothing, loss_terms: as in :class:`ClassifierModule`.
        transforms: more transforms, applied after the analog one.
    """

    def __init__(
        self,
        backbone: str | BackboneFactory = "small_cnn",
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        preset: str = "standard_hwa_torch",
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
        digital_bias: bool | None = None,
        loss_terms: Sequence[LossTerm] | None = None,
        transforms: Sequence[ModelTransform] | None = None,
    ) -> None:
        analog = AnalogTransform(preset, tile_size, weight_noise, clip, dac_bits, adc_bits, out_noise, g_max,
                                 digital_bias, digital_checkpoint, digital_epochs)  # fmt: skip
        super().__init__(backbone, num_classes, input_shape, optimizer, scheduler, label_smoothing, loss_terms,
                         [analog, *(transforms or [])])  # fmt: skip
        self.save_plain_hyperparameters()
        self.analog = analog

    # the analog transform's settings and state, where DriftEvaluation and older code read them
    rpu_config = property(lambda self: self.analog.rpu_config)
    preset = property(lambda self: self.analog.preset)
    digital_epochs = property(lambda self: self.analog.digital_epochs)
    digital_layers = property(lambda self: self.analog.digital_layers)

    @property
    def digital_state(self) -> dict[str, torch.Tensor] | None:
        return self.analog.digital_state

    @digital_state.setter
    def digital_state(self, value: dict[str, Any] | None) -> None:
        self.analog.digital_state = value

    def hwa_active(self) -> bool:
        """Whether HWA training applies in the current epoch."""
        return self.analog.hwa_active(self)
