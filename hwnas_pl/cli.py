"""The ``hwnas`` command: LightningCLI's ``fit``/``validate``/``test``/``predict`` over any of the package's modules.

Usage::

    hwnas fit --config configs/digits_classifier.yaml
    hwnas fit --config configs/digits_classifier.yaml --ckpt_path last      # resume
    hwnas fit --model ClassifierModule --model.backbone resnet18 --data DigitsDataModule --data.resize 32

Models and DataModules are named by ``class_path`` or by short class name. The DataModule's ``num_classes`` and
``input_shape`` are linked into the model. Configs may use OmegaConf interpolation across the whole merged
config, e.g. ``dirpath: ${trainer.default_root_dir}/checkpoints``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from typing_extensions import override

import hwnas_pl.datamodules  # noqa: F401  (registers short class names for jsonargparse)
import hwnas_pl.modules  # noqa: F401
from hwnas_pl.errors import UserInputError

def _run_dir(subpath: str = "", *, _root_: Any) -> str:
    """OmegaConf resolver ``${run_dir:sub}``: ``trainer.default_root_dir`` of the running subcommand, joined with ``sub``."""
    roots = [node["trainer"].get("default_root_dir") for node in _root_.values() if hasattr(node, "get") and "trainer" in node]
    root = next((r for r in roots if r), None) or "."
    return str(Path(root) / subpath) if subpath else str(root)


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("run_dir"):
        OmegaConf.register_new_resolver("run_dir", _run_dir)


#: Values every DataModule of the package exposes and every model of the package takes.
LINKED_DATA_VALUES = ("num_classes", "input_shape")


class HWNASCLI(LightningCLI):
    """LightningCLI in subclass mode with the package's conventions.

    - ``data.num_classes`` and ``data.input_shape`` are linked into the model when it accepts them.
    - OmegaConf interpolation (``${...}``) is resolved over the whole merged config.
    - After ``fit``/``validate``/``test`` the CLI prints where the logs and checkpoints are and the final metrics.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        parser_kwargs = kwargs.pop("parser_kwargs", None) or {}
        parser_kwargs.setdefault("parser_mode", "omegaconf+")
        _register_resolvers()
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(*args, parser_kwargs=parser_kwargs, **kwargs)

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key in LINKED_DATA_VALUES:
            parser.link_arguments(f"data.{key}", f"model.init_args.{key}", apply_on="instantiate")

    def _print_summary(self, stage: str) -> None:
        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        lines = [f"hwnas {stage} finished."]
        for logger in trainer.loggers:
            where = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
            if type(logger).__name__ == "WandbLogger":
                where = getattr(getattr(logger.experiment, "dir", None), "__str__", lambda: where)()
                where = str(Path(where).parent) if where else where
            lines.append(f"  logs ({type(logger).__name__}): {Path(where).resolve() if where else 'n/a'}")
        ckpt = trainer.checkpoint_callback
        if stage == "fit" and ckpt is not None:
            if ckpt.last_model_path:
                lines.append(f"  last checkpoint: {Path(ckpt.last_model_path).resolve()}")
            if ckpt.best_model_path:
                score = f" ({ckpt.monitor}={float(ckpt.best_model_score):.4f})" if ckpt.best_model_score is not None else ""
                lines.append(f"  best checkpoint: {Path(ckpt.best_model_path).resolve()}{score}")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        if metrics:
            lines.append("  metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
        print("\n".join(lines), flush=True)

    def after_fit(self) -> None:
        self._print_summary("fit")

    def after_validate(self) -> None:
        self._print_summary("validate")

    def after_test(self) -> None:
        self._print_summary("test")


def _finish_wandb_runs(cli: HWNASCLI) -> None:
    """Close W&B runs so that an offline run's summary and history are complete when the command returns."""
    trainer = getattr(cli, "trainer", None)
    for logger in getattr(trainer, "loggers", []):
        run = getattr(logger, "_experiment", None)
        if type(logger).__name__ == "WandbLogger" and run is not None:
            run.finish()


def cli_main(args: ArgsType = None) -> None:
    """Entry point of ``hwnas`` and ``python -m hwnas_pl``.

    Bad user input (:class:`hwnas_pl.errors.UserInputError`) ends with its one-sentence message on stderr and
    exit code 2; set ``HWNAS_TRACEBACK=1`` for the traceback.
    """
    try:
        cli = HWNASCLI(args=args)
        _finish_wandb_runs(cli)
    except UserInputError as err:
        if os.environ.get("HWNAS_TRACEBACK"):
            raise
        print(f"hwnas: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
