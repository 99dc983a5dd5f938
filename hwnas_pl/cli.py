"""The ``hwnas`` command: LightningCLI's ``fit``/``validate``/``test``/``predict``, plus ``search`` and ``bench``.

Usage::

    hwnas fit --config configs/digits_classifier.yaml
    hwnas fit --config configs/digits_classifier.yaml --ckpt_path last      # resume
    hwnas fit --model ClassifierModule --model.backbone resnet18 --data DigitsDataModule --data.resize 32
    hwnas search --config configs/search/nb201_nsga2_lut.yaml
    hwnas bench lut --space nasbench201 --device cpu

Models and DataModules are named by ``class_path`` or by short class name. The DataModule's ``num_classes`` and
``input_shape`` are linked into the model. ``${run_dir:sub}`` in a config is ``trainer.default_root_dir/sub``,
e.g. ``dirpath: ${run_dir:checkpoints}``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger
from typing_extensions import override

import hwnas_pl.callbacks
import hwnas_pl.datamodules  # noqa: F401  (registers short class names for jsonargparse)
import hwnas_pl.modules
from hwnas_pl.checkpoint import CheckpointMismatchError
from hwnas_pl.cli_errors import DEBUG_ENV, ExplainedErrorsMixin
from hwnas_pl.commands import (  # noqa: F401
    COMMANDS,
    CommandParser,
    _user_error,
    bench_main,
    exit_with,
    one_sentence,
    search_main,
)


def _run_dir(subpath: str = "", *, _root_: Any) -> str:
    """OmegaConf resolver ``${run_dir:sub}``: the subcommand's ``trainer.default_root_dir`` joined with ``sub``.

    The merged config holds the trainer at its top (``run=False``) or under the subcommand's key (``fit.trainer``).
    """
    nodes = [_root_, *(v for v in _root_.values() if hasattr(v, "keys"))]
    roots = [n["trainer"].get("default_root_dir") for n in nodes if "trainer" in n and hasattr(n["trainer"], "get")]
    root = next((r for r in roots if r), None) or "."
    return str(Path(root) / subpath) if subpath else str(root)


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("run_dir"):
        register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
        register("run_dir", _run_dir)


class HWNASArgumentParser(ExplainedErrorsMixin, LightningArgumentParser):
    """LightningCLI's parser whose errors end with one sentence naming the bad key and what was expected."""


#: Values every DataModule of the package exposes and every model of the package takes.
LINKED_DATA_VALUES = ("num_classes", "input_shape")


def _plain(value: Any) -> Any:
    """``value`` with Namespaces as dicts and tuples as lists, for comparing configs with checkpoint hparams."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "__path__"}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same(saved: Any, given: Any) -> bool:
    """Whether a checkpoint's hparam and a config value mean the same (class paths compared by class name)."""
    if isinstance(saved, dict) and isinstance(given, dict):
        if "class_path" in saved and "class_path" in given:
            if str(saved["class_path"]).rsplit(".", 1)[-1] != str(given["class_path"]).rsplit(".", 1)[-1]:
                return False
        return all(_same(saved[k], given[k]) for k in saved.keys() & given.keys() if k != "class_path")
    if isinstance(saved, list) and isinstance(given, list):
        return len(saved) == len(given) and all(_same(a, b) for a, b in zip(saved, given))
    return saved == given


def _explicit_conflict(hparams: dict[str, Any], model: Any) -> tuple[str, Any, Any] | None:
    """A model argument the config sets, which the checkpoint was trained with another value of, or ``None``.

    Returns ``(name, checkpoint value, config value)`` for the first argument set to a value other than the class
    default that differs from the checkpoint's hparams. Lightning replaces the config's model arguments by the
    checkpoint's, so an argument the user set explicitly would be ignored silently.
    """
    init_args = _plain(getattr(model, "init_args", None) or {})
    class_path = getattr(model, "class_path", None)
    try:
        module_name, _, name = str(class_path).rpartition(".")
        params = inspect.signature(getattr(importlib.import_module(module_name), name)).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return None
    for key, saved in hparams.items():
        if key.startswith("_") or key in LINKED_DATA_VALUES or key not in init_args or key not in params:
            continue
        given, default = init_args[key], params[key].default
        if _same(_plain(given), _plain(default)):  # not set by the user: the checkpoint's value rightly wins
            continue
        if not _same(_plain(saved), given):
            return key, saved, given
    return None


def warn_oversubscribed(trainer: Any) -> None:
    """Warn when more DDP processes run on the CPU than the machine has cores."""
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.utilities import rank_zero_warn

    cores = os.cpu_count() or 1
    if isinstance(trainer.accelerator, CPUAccelerator) and trainer.world_size > cores:
        rank_zero_warn(
            f"{trainer.world_size} DDP processes on {cores} CPU cores compete for the cores and train slower than "
            f"{cores}; expected --trainer.devices {cores} or fewer on this machine's CPU."
        )


class HWNASCLI(LightningCLI):
    """LightningCLI in subclass mode with the package's conventions.

    - ``data.num_classes`` and ``data.input_shape`` are linked into the model when it accepts them.
    - OmegaConf interpolation (``${...}``) is resolved over the whole merged config.
    - After ``fit``/``validate``/``test`` the CLI prints where the logs and checkpoints are and the final metrics.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        parser_kwargs = kwargs.pop("parser_kwargs", None) or {}
        parser_kwargs.setdefault("parser_mode", "omegaconf+")
        parser_kwargs.setdefault("allow_abbrev", False)  # a typo must not silently match a longer option
        parser_kwargs.setdefault(
            "description",
            "hwnas: hardware-aware NAS and efficient-inference training on PyTorch Lightning. Besides the Trainer "
            "subcommands below: `hwnas search --config configs/search/<name>.yaml` runs a population search, "
            "`hwnas bench lut --space nasbench201 --device cpu` measures a per-op latency lookup table.",
        )
        _register_resolvers()
        kwargs.setdefault("parser_class", HWNASArgumentParser)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(*args, parser_kwargs=parser_kwargs, **kwargs)

    @override
    def _parse_ckpt_path(self) -> None:
        """Refuse a missing checkpoint or one written by another model class before Lightning merges its hparams."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
            path = Path(ckpt_path)
            if not path.is_file():
                raise CheckpointMismatchError(
                    f"Checkpoint '{path}' does not exist; expected a path to a .ckpt file, or 'last' to resume the "
                    "run in trainer.default_root_dir."
                )
            try:
                # mmap: only the hyper-parameters are read here; Lightning loads the weights itself afterwards
                ckpt = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
                hparams = ckpt.get("hyper_parameters") or {}
            except Exception as err:  # noqa: BLE001 - any unreadable file gets the same sentence
                raise CheckpointMismatchError(
                    f"Checkpoint '{path}' could not be read ({type(err).__name__}); expected a .ckpt file written by "
                    "Lightning."
                ) from None
            written = hparams.get("_class_path")
            model = self.config[subcommand].get("model")
            configured = getattr(model, "class_path", None)
            if written and configured and written != configured:
                raise CheckpointMismatchError(
                    f"Checkpoint '{path}' was written by {written}, but the config's model is {configured}; expected "
                    f"a checkpoint of {configured}."
                )
            conflict = _explicit_conflict(hparams, model)
            if conflict is not None:
                key, saved, given = conflict
                raise CheckpointMismatchError(
                    f"Checkpoint '{path}' was trained with model.init_args.{key}={saved!r}, but the config sets "
                    f"{given!r}; expected the checkpoint's own setting (drop the argument, or train a new run "
                    "without --ckpt_path)."
                )
        super()._parse_ckpt_path()

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
            if isinstance(logger, WandbLogger):  # the run's own folder (offline-run-*/ or run-*/)
                where = Path(logger.experiment.dir).parent
            else:
                where = logger.log_dir or logger.save_dir
            lines.append(f"  logs ({type(logger).__name__}): {Path(where).resolve() if where else 'n/a'}")
        for ckpt in trainer.checkpoint_callbacks if stage == "fit" else []:
            if ckpt.monitor and ckpt.best_model_path:
                best = ckpt.best_model_score
                score = f" ({ckpt.monitor}={float(best):.4f})" if best is not None else ""
                lines.append(f"  best checkpoint: {Path(ckpt.best_model_path).resolve()}{score}")
            newest = ckpt.last_model_path or (ckpt.best_model_path if not ckpt.monitor else "")
            if newest:
                lines.append(f"  last checkpoint: {Path(newest).resolve()}")
        metrics = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if v is not None and getattr(v, "numel", lambda: 1)() == 1
        }
        if metrics:
            lines.append("  metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
        print("\n".join(lines), flush=True)

    def before_fit(self) -> None:
        """Warn about more CPU processes than cores; say so when the checkpoint has nothing left to train."""
        warn_oversubscribed(self.trainer)
        ckpt_path = self.config["fit"].get("ckpt_path") if "fit" in self.config else None
        if not ckpt_path or not Path(ckpt_path).is_file() or not self.trainer.is_global_zero:
            return
        max_epochs = self.trainer.max_epochs
        try:
            loops = torch.load(ckpt_path, weights_only=True, map_location="cpu", mmap=True)["loops"]["fit_loop"]
            progress, batches = loops["epoch_progress"]["current"], loops["epoch_loop.batch_progress"]
        except (KeyError, TypeError, RuntimeError, OSError):
            return
        # epochs whose training finished: an epoch saved at its validation end counts once its last batch ran
        done = progress["processed"] + int(progress["processed"] < progress["ready"] and batches.get("is_last_batch"))
        if max_epochs is not None and max_epochs >= 0 and done >= max_epochs:
            print(
                f"hwnas fit: checkpoint '{ckpt_path}' has already trained {done} epochs (trainer.max_epochs is "
                f"{max_epochs}); nothing left to train. Raise --trainer.max_epochs to train it further.",
                flush=True,
            )

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


#: Classes whose modules import aihwkit: imported only when a command names them (short names resolve only for
#: imported classes), so that ``hwnas --help`` and non-analog runs do not pay for aihwkit.
HEAVY_CLASSES = {
    **hwnas_pl.modules.LAZY,
    **hwnas_pl.callbacks.LAZY,
    "AnalogTransform": "hwnas_pl.analog.transform",
}


def import_named_classes(argv: list[str]) -> None:
    """Import the :data:`HEAVY_CLASSES` that the arguments or their config files name."""
    texts = list(argv)
    for i, arg in enumerate(argv):
        path = argv[i + 1] if arg in ("-c", "--config") and i + 1 < len(argv) else arg.partition("=")[2] or arg
        if path.endswith((".yaml", ".yml", ".json")) and Path(path).is_file():
            texts.append(Path(path).read_text(errors="replace"))
    text = "\n".join(texts)
    for name, module in HEAVY_CLASSES.items():
        if re.search(rf"\b{name}\b", text):
            importlib.import_module(module)


def cli_main(args: ArgsType = None) -> None:
    """Entry point of ``hwnas`` and ``python -m hwnas_pl``.

    ``search`` and ``bench`` go to their own parsers; the rest is LightningCLI. Bad user input
    (:class:`hwnas_pl.errors.UserInputError`, also when jsonargparse wrapped it while instantiating a class) ends
    with its one-sentence message on stderr and exit code 2; set ``HWNAS_DEBUG=1`` for the traceback.
    """
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else None
    try:
        if argv and argv[0] in COMMANDS:
            COMMANDS[argv[0]](argv[1:])
            return
        import_named_classes(argv if argv is not None else [])
        cli = HWNASCLI(args=args)
        _finish_wandb_runs(cli)
    except Exception as exc:
        err = _user_error(exc)
        if err is None or os.environ.get(DEBUG_ENV):
            raise
        exit_with(err)
