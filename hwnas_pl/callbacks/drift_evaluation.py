"""Accuracy over time after PCM programming and drift, HWA-trained vs digitally trained (thesis §5.3.2)."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from hwnas_pl.analog import DEFAULT_TIMES, DriftResult, drift_accuracy, parse_time, set_tile_config, time_label
from hwnas_pl.analog.drift import difference_ci
from hwnas_pl.analog.inference import map_for_inference
from hwnas_pl.analog.transform import AnalogTransform
from hwnas_pl.errors import ConfigError
from hwnas_pl.io import save_figure_atomic, write_atomic


def analog_transform_of(pl_module: L.LightningModule) -> AnalogTransform:
    """The module's :class:`AnalogTransform` (an AnalogModule's, or one in any module's ``transforms``).

    Raises:
        ConfigError: when the module has none.
    """
    finder = getattr(pl_module, "transform", None)
    analog = finder(AnalogTransform) if finder is not None else None
    if analog is None:
        raise ConfigError(
            f"DriftEvaluation needs an analog network (an AnalogModule, or a module with an AnalogTransform in its "
            f"transforms), got {type(pl_module).__name__}."
        )
    return analog


class DriftEvaluation(L.Callback):
    """Program, drift and evaluate an analog network at the end of fit and test.

    The module is an :class:`~hwnas_pl.modules.AnalogModule` or any module with an
    :class:`~hwnas_pl.analog.transform.AnalogTransform` in its ``transforms``.

    For each time ``t`` and each of ``trials`` programmings (see :func:`~hwnas_pl.analog.drift.drift_accuracy`) it
    logs ``drift/acc@{t}`` and ``drift/acc@{t}_std``, ``drift/avm`` = acc(1 s) − acc(30 d) and ``drift/sigma_1d``;
    with the module's digital reference weights it logs the same under ``drift_digital/`` (the digitally
    trained network mapped to analog for inference only by :func:`~hwnas_pl.analog.inference.map_for_inference`,
    input ranges calibrated on ``calibration_batches`` training batches). The report compares the two by the
    difference of their AVMs with a 95 % confidence interval over trials; their ratio is given only when both
    drops are significantly positive. It writes ``drift_report.json`` and ``drift_accuracy.png`` (accuracy vs time,
    log axis) to ``output_dir`` and logs a W&B table and the plot.

    Evaluated on a copy on the strategy's root device, at the end of training (before Lightning's teardown moves
    the module to the CPU), so training is not disturbed. Under DDP each rank evaluates every ``world_size``-th
    batch with the same programming noise and the counts are summed on that device.

    Args:
        times: inference times, seconds or ``"1h"``/``"30d"``-style strings (default 1 s, 1 h, 1 d, 30 d, 1 y).
        trials: programmings per time.
        seed: seed of trial 0 (trial ``k`` uses ``seed + k``).
        every_n_epochs: also evaluate after every n-th validation (``None``: only at the end of fit).
        compare_digital: also evaluate the digital reference weights when the module has them.
        output_dir: where the report and plot go (default: the trainer's ``default_root_dir``).
        calibration_batches: training batches that calibrate the digital reference's input ranges.
    """

    def __init__(
        self,
        times: Sequence[float | str] = DEFAULT_TIMES,
        trials: int = 5,
        seed: int = 0,
        every_n_epochs: int | None = None,
        compare_digital: bool = True,
        output_dir: str | None = None,
        calibration_batches: int = 10,
    ) -> None:
        self.times = sorted(parse_time(t) for t in times)
        if not self.times:
            raise ConfigError("DriftEvaluation needs at least one time.")
        if trials < 1:
            raise ConfigError(f"DriftEvaluation needs trials >= 1, got {trials}.")
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ConfigError(f"DriftEvaluation every_n_epochs must be at least 1 or null, got {every_n_epochs}.")
        self.trials, self.seed, self.every_n_epochs = trials, seed, every_n_epochs
        if calibration_batches < 1:
            raise ConfigError(f"DriftEvaluation calibration_batches must be at least 1, got {calibration_batches}.")
        self.compare_digital, self.output_dir = compare_digital, output_dir
        self.calibration_batches = calibration_batches
        self.reports: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        analog_transform_of(pl_module)

    @override
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.every_n_epochs is None or trainer.state.fn != "fit":
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._evaluate(trainer, pl_module, "val", write=False, epoch=trainer.current_epoch)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not on_fit_end: Lightning's teardown has moved the module to the CPU by then
        self._evaluate(trainer, pl_module, "val", write=True, epoch=last_epoch(trainer))

    @override
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._evaluate(trainer, pl_module, "test", write=True, epoch=last_epoch(trainer))

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"reports": self.reports}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reports = list(state_dict.get("reports", []))

    # ------------------------------------------------------------------ work
    def _batches(self, trainer: L.Trainer, split: str):
        if trainer.datamodule is not None:
            loader = trainer.datamodule.val_dataloader() if split == "val" else trainer.datamodule.test_dataloader()
        else:
            loader = trainer.val_dataloaders if split == "val" else trainer.test_dataloaders
        if isinstance(loader, (list, tuple)):
            loader = loader[0]
        if loader is None:
            raise ConfigError(f"DriftEvaluation found no {split} dataloader to evaluate on.")
        rank, world = trainer.global_rank, trainer.world_size

        def batches():
            for i, batch in enumerate(loader):
                if i % world == rank:
                    yield batch[0], batch[1]

        return batches

    def _calibration_batches(self, trainer: L.Trainer, split: str):
        """Training batches when the training data is set up (a fit, or a test after one); else ``split``'s."""
        dm = trainer.datamodule
        if dm is not None and getattr(dm, "data_train", None) is not None:
            return dm.train_dataloader(), "train"
        if dm is None and trainer.train_dataloader is not None:
            return trainer.train_dataloader, "train"
        return self._batches(trainer, split)(), split

    def _run(self, trainer: L.Trainer, pl_module, split: str, weights: dict[str, torch.Tensor] | None):
        """The drift result of the module's network (``weights=None``) or of ``weights`` mapped for inference."""
        device = trainer.strategy.root_device
        model = copy.deepcopy(pl_module.net).to(device)
        rpu_config = analog_transform_of(pl_module).rpu_config  # inference with the module's setting

        def reduce(counts: np.ndarray) -> np.ndarray:
            tensor = torch.as_tensor(counts, dtype=torch.float64, device=device)
            return trainer.strategy.reduce(tensor, reduce_op="sum").cpu().numpy()

        calibrated_on = None
        if weights is None:
            set_tile_config(model, rpu_config)
        else:
            model.load_state_dict(weights)
            batches, calibrated_on = self._calibration_batches(trainer, split)
            mean = (lambda t: trainer.strategy.reduce(t, reduce_op="mean")) if trainer.world_size > 1 else None
            map_for_inference(model, rpu_config, batches, self.calibration_batches, mean)
        result = drift_accuracy(model, self._batches(trainer, split), self.times, self.trials, self.seed, reduce)
        result.extra["device"] = str(next(model.parameters()).device)
        if calibrated_on is not None:
            result.extra["input_ranges_calibrated_on"] = calibrated_on
        return result

    def _evaluate(self, trainer: L.Trainer, pl_module, split: str, write: bool, epoch: int | None) -> None:
        analog = analog_transform_of(pl_module)
        results = {"hwa": self._run(trainer, pl_module, split, None)}
        if self.compare_digital and analog.digital_state is not None:
            results["digital"] = self._run(trainer, pl_module, split, analog.digital_state)
        metrics: dict[str, float] = {}
        for name, result in results.items():
            metrics.update(result.summary(prefix="drift/" if name == "hwa" else "drift_digital/"))
        for key, value in metrics.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        report = {
            "split": split,
            "epoch": epoch,
            "preset": analog.preset,
            "trials": self.trials,
            **{name: result.to_dict() for name, result in results.items()},
        }
        if "digital" in results:
            report.update(compare_avm(results["hwa"], results["digital"]))
        self.reports.append(report)
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)
        if write and trainer.is_global_zero:
            self._write(trainer, report, results)

    def _write(self, trainer: L.Trainer, report: dict[str, Any], results: dict[str, DriftResult]) -> None:
        out = Path(self.output_dir or trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "drift_report.json", json.dumps(report, indent=2))
        png = out / "drift_accuracy.png"
        plot_drift(results, png, report.get("preset"), report.get("trials"))
        rank_zero_info(f"Drift report: {out / 'drift_report.json'}")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                rows = [
                    [name, time_label(t), t, float(m), float(s)]
                    for name, r in results.items()
                    for t, m, s in zip(r.times, r.mean(), r.std())
                ]
                logger.log_table("drift/table", columns=["model", "time", "seconds", "acc_mean", "acc_std"], data=rows)
                logger.log_image("drift/accuracy_vs_time", images=[str(png)])


def last_epoch(trainer: L.Trainer) -> int | None:
    """Index of the last epoch trained to completion (``None`` before the first)."""
    done = trainer.fit_loop.epoch_progress.current.completed
    return done - 1 if done > 0 else None


def compare_avm(hwa: DriftResult, digital: DriftResult) -> dict[str, Any]:
    """The digital network's AVM minus the HWA one's, with a 95 % Welch interval over trials (accuracy fractions).

    Their ratio is added when both AVMs are significantly positive (``None``, with the reason, otherwise).
    """
    out: dict[str, Any] = {"avm_difference_digital_minus_hwa": difference_ci(digital.avm_trials(), hwa.avm_trials())}
    cis = {name: difference_ci(r.avm_trials()) for name, r in (("hwa", hwa), ("digital", digital))}
    if all(ci is not None and ci["ci95"][0] > 0 for ci in cis.values()):
        out["avm_ratio_digital_over_hwa"] = digital.avm() / hwa.avm()
    else:
        out["avm_ratio_digital_over_hwa"] = None
        out["avm_ratio_note"] = "not reported: an AVM is not significantly above 0 over the trials"
    return out


#: how the drift plot names the two networks
DRIFT_LABELS = {"hwa": "HWA-trained", "digital": "digitally trained, mapped to analog"}


def plot_drift(results: dict[str, DriftResult], path: Path, preset: str | None = None, trials: int | None = None):
    """Accuracy (mean ± std over trials) against time after programming; log time axis ticked 1 s, 1 h, 1 d, ...

    Returns the figure (closed after saving).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    times: list[float] = []
    for name, r in results.items():
        ax.errorbar(
            r.times, 100 * r.mean(), yerr=100 * r.std(), marker="o", capsize=3, label=DRIFT_LABELS.get(name, name)
        )
        times = sorted(set(times) | set(r.times))
    ax.set_xscale("log")
    ax.set_xticks(times, [time_label(t) for t in times])
    ax.minorticks_off()
    ax.set_xlabel("time after programming")
    ax.set_ylabel("accuracy (%)")
    parts = [f"preset {preset}" if preset else None, f"{trials} programmings per time" if trials else None]
    ax.set_title("PCM drift: " + ", ".join(p for p in parts if p) if any(parts) else "PCM drift", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return fig
