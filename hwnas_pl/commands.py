"""The subcommands that are not Lightning Trainer methods (``hwnas search``, ``hwnas bench``), without Lightning.

They parse with jsonargparse and end bad input with one sentence like the Trainer subcommands; importing this
module (and running a search over Lightning-free evaluators) never imports Lightning.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from hwnas_pl.cli_errors import DEBUG_ENV, ExplainedErrorsMixin
from hwnas_pl.errors import ConfigError, UserInputError


def _user_error(exc: BaseException | None) -> UserInputError | None:
    """The :class:`UserInputError` behind ``exc``, following the chain jsonargparse wraps instantiation errors in."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserInputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def one_sentence(err: BaseException) -> str:
    """The message of ``err``; for an error re-raised from a DataLoader worker, the worker's own sentence.

    PyTorch re-raises a worker's exception with "Caught X in DataLoader worker process N" and the worker's
    traceback as the message; its last line is ``module.X: <the sentence>``.
    """
    message = str(err)
    if "Original Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


class CommandParser(ExplainedErrorsMixin, ArgumentParser):
    """jsonargparse parser of the non-Lightning subcommands, with one-sentence errors."""


def search_main(args: list[str]) -> None:
    """``hwnas search``: a population search configured by YAML (see ``configs/search/``)."""
    import hwnas_pl.search.analognas_evolution  # noqa: F401  (every strategy a config may name is a known subclass)
    import hwnas_pl.search.genetic  # noqa: F401
    from hwnas_pl.evaluators.base import list_cost_models
    from hwnas_pl.search.minimize import release_process_group
    from hwnas_pl.search.runner import SearchRunner

    list_cost_models()  # imports every Lightning-free evaluator and surrogate
    if "-h" in args or "--help" in args:  # the help lists the training-based evaluators too (they need Lightning)
        import hwnas_pl.evaluators.analog_training  # noqa: F401

    parser = CommandParser(prog="hwnas search", description=SearchRunner.__doc__.splitlines()[0], env_prefix="HWNAS")
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="YAML config of the search.")
    parser.add_class_arguments(SearchRunner, as_group=False, sub_configs=True)
    parser.add_argument("--resume", type=bool, default=False, help="Continue from output_dir/search_state.pkl.")
    cfg = parser.parse_args(args)
    resume = cfg.pop("resume")
    cfg.pop("config", None)
    if cfg.max_evaluations < 1:  # before the evaluators are built (a LUT or a surrogate can take minutes)
        raise ConfigError(f"max_evaluations must be >= 1, got {cfg.max_evaluations}.")
    init = parser.instantiate(cfg)
    runner = SearchRunner(**{name: init[name] for name in inspect.signature(SearchRunner).parameters})
    result = runner.run(resume=resume)
    release_process_group()  # on success only: a failing rank must not wait at a barrier for the others
    if runner.rank == 0:
        norm = f", normalized hypervolume {result.normalized_hypervolume:.4f}" if result.normalized_hypervolume else ""
        print(
            f"hwnas search finished: {result.n_evaluations} evaluations, {len(result.front)} architectures on the "
            f"front, hypervolume {result.hypervolume:.4g}{norm}.\n  results: {result.output_dir.resolve()} "
            "(pareto_front.json, history.csv, pareto_front.png, summary.json)",
            flush=True,
        )
        found = result.strategy or {}
        if "pick" in found:
            over = ", over budget: no member was within it" if found["pick"].get("within_budget") is False else ""
            print(f"  pick: {found['pick']['arch']} (fitness {found['pick']['fitness']:.4g}{over})", flush=True)
        for row in (result.verified or [])[:5]:
            values = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("role", "arch", "on_true_front"))
            print(f"  verified {row['role']}: {row['arch']} ({values})", flush=True)
        if result.verified and len(result.verified) > 5:
            front = sum(r["on_true_front"] for r in result.verified)
            print(f"  ... {len(result.verified)} verified, {front} on their true front: verified.json", flush=True)
        if "top1" in found:
            measured = found["top1"]["measured"] or found["top1"]["predicted"]
            values = ", ".join(f"{k} {v:.4g}" for k, v in measured.items())
            kind = "measured" if found["top1"]["measured"] else "predicted"
            print(f"  top-1: {found['top1']['arch']} ({kind}: {values}; true evaluations "
                  f"{found['true_evaluations']})", flush=True)  # fmt: skip


def bench_main(args: list[str]) -> None:
    """``hwnas bench lut|reuse``: a per-op latency table for a space; computation reuse measured on a video."""
    parser = CommandParser(prog="hwnas bench", description="Hardware measurements.")
    sub = parser.add_subcommands(required=True, dest="what")
    from hwnas_pl.evaluators.lut import LatencyLUT

    lut = CommandParser(description="Measure every op a sample of the space uses; save the LUT as JSON.")
    lut.add_argument("--space", type=str, default="nasbench201", help="Registered search-space name.")
    lut.add_argument("--output", type=str, default="lut.json", help="JSON file of the table (extended if present).")
    lut.add_argument("--samples", type=int, default=200, help="Architectures sampled (LHS); 0 = every one.")
    lut.add_argument("--seed", type=int, default=0)
    # the measurement settings are LatencyLUT's own arguments (device, batch_size, threads, warmup, repeats, ...)
    lut.add_class_arguments(LatencyLUT, as_group=False, skip={"space", "path", "strict"})
    sub.add_subcommand("lut", lut, help="Build a per-op latency lookup table.")
    reuse = CommandParser(description="Dense vs LSH-reuse inference on a video's frames (batch 1); one JSON object.")
    reuse.add_argument("--video", type=str, required=True, help="A video file (mp4, avi, ...).")
    reuse.add_argument("--model", type=str, default="resnet18", help="A timm model name (random weights).")
    reuse.add_argument("--height", type=int, default=224)
    reuse.add_argument("--width", type=int, default=224)
    reuse.add_argument("--threads", type=int, default=1)
    reuse.add_argument("--frames", type=int, default=32, help="Frames timed (after --warmup more).")
    reuse.add_argument("--warmup", type=int, default=3)
    reuse.add_argument("--reuse_frames", type=str, default="intra", choices=["intra", "inter", "both"],
                       help="Clusters within each frame (intra), products reused from the previous frame (inter), "
                            "or both.")  # fmt: skip
    reuse.add_argument("--config", type=str, default=None,
                       help="YAML of the reuse layers: {layers: {name: {input_dim, hash_size}}, default: {...}, "
                            "skip: [names]} (hwnas lsh-tune writes one).")  # fmt: skip
    sub.add_subcommand("reuse", reuse, help="Measure computation reuse on a video.")
    parsed = parser.parse_args(args)
    import json

    if parsed.what == "reuse":
        cfg = parsed.reuse
        settings: dict = {}
        if cfg.config:
            import yaml

            path = Path(cfg.config)
            if not path.is_file():
                raise UserInputError(f"Reuse config '{path}' does not exist; expected a YAML file.")
            settings = yaml.safe_load(path.read_text()) or {}
            unknown = [k for k in settings if k not in ("layers", "default", "skip")]
            if unknown:
                raise ConfigError(f"Reuse config key '{unknown[0]}' is unknown; expected layers, default, skip.")
        from hwnas_pl.nn.reuse_timing import benchmark_reuse

        result = benchmark_reuse(
            cfg.video, cfg.model, cfg.height, cfg.width, cfg.threads, settings.get("layers"),
            settings.get("default"), tuple(settings.get("skip", ())), cfg.frames, cfg.warmup,
            reuse_frames=cfg.reuse_frames,
        )  # fmt: skip
        print(json.dumps(result))
        return
    cfg = parsed.lut
    import numpy as np

    from hwnas_pl.spaces import create_search_space

    space = create_search_space(cfg.space)
    settings = [n for n in inspect.signature(LatencyLUT).parameters if n not in ("space", "path", "strict")]
    table = LatencyLUT(space, cfg.output, **{n: cfg[n] for n in settings})
    archs = space.enumerate() if cfg.samples == 0 else space.sample(cfg.samples, np.random.default_rng(cfg.seed), "lhs")
    added = table.build_for(archs)
    path = table.save()
    print(json.dumps({"lut": str(path.resolve()), "entries": len(table.entries), "added": added, **table.profile}))


def lsh_tune_main(args: list[str]) -> None:
    """``hwnas lsh-tune``: per-layer (input_dim, hash_size) by Bayesian optimisation on a video's frames."""
    from hwnas_pl.nn.lsh_tuning import HASH_SIZES, INPUT_DIMS

    parser = CommandParser(prog="hwnas lsh-tune", description="Tune each reuse layer's LSH settings by minimising "
                           "Theta = MSE / sigma (Eq. 3) with BoTorch; writes the layers YAML that hwnas bench reuse "
                           "--config and to_reuse read, and prints one JSON object.")  # fmt: skip
    parser.add_argument("--video", type=str, required=True, help="A video file (mp4, avi, ...).")
    parser.add_argument("--model", type=str, default="resnet18", help="A timm model name (random weights).")
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--frames", type=int, default=4, help="Frames whose layer inputs the objective uses.")
    parser.add_argument("--input_dims", type=list[int], default=list(INPUT_DIMS))
    parser.add_argument("--hash_sizes", type=list[int], default=list(HASH_SIZES))
    parser.add_argument("--n_init", type=int, default=5, help="Random grid points evaluated first, per layer.")
    parser.add_argument("--budget", type=int, default=20, help="Evaluations per layer in all.")
    parser.add_argument("--workers", type=int, default=1, help="Processes, one layer each at a time.")
    parser.add_argument("--max_nmse", type=float | None, default=None,
                        help="Instead of Eq. 3's Theta: the most compression within this layer NMSE.")  # fmt: skip
    parser.add_argument("--norm_step", type=float | None, default=None,
                        help="Also bucket sub-vectors by norm with this step (log2 units; beyond the paper), fixed "
                             "for every layer and written with each layer's setting.")  # fmt: skip
    parser.add_argument("--pareto", type=bool, default=False,
                        help="Search each layer's NMSE/compression front with qLogNEHVI instead of minimising Theta "
                             "(beyond the paper).")  # fmt: skip
    parser.add_argument("--network_nmse", type=float | None, default=None,
                        help="Pick per-layer points of the fronts for this network output NMSE, measured on the "
                             "frames; layers that do not fit stay dense (written as skip).")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="Of the model, the projections and the initial design.")
    parser.add_argument("--output", type=str, default="lsh_layers.yaml")
    cfg = parser.parse_args(args)
    import json
    import time

    import yaml

    from hwnas_pl.nn.lsh_tuning import LayerTuning, fit_network_budget, tune_network
    from hwnas_pl.nn.reuse_timing import network_on_video

    t0 = time.perf_counter()
    net, name, clip = network_on_video(cfg.video, cfg.model, cfg.height, cfg.width, cfg.frames, cfg.seed)
    tuned = tune_network(net, clip, cfg.workers, input_dims=cfg.input_dims, hash_sizes=cfg.hash_sizes,
                         n_init=cfg.n_init, budget=cfg.budget, seed=cfg.seed, projection_seed=cfg.seed,
                         max_nmse=cfg.max_nmse, norm_step=cfg.norm_step, pareto=cfg.pareto)  # fmt: skip
    settings = {"layers": {n: t.setting for n, (t, _) in tuned.items()}}
    report: dict = {}
    aim = "least Theta = MSE / sigma" if cfg.max_nmse is None else f"most compression within NMSE {cfg.max_nmse}"
    if cfg.network_nmse is not None:
        pick = fit_network_budget(net, clip, {n: t for n, (t, _) in tuned.items()}, cfg.network_nmse, cfg.seed)
        settings = {"layers": pick.layers, "skip": pick.dense}
        aim = f"most MACs saved within a network output NMSE of {cfg.network_nmse} (its fronts' points)"
        report = {"network_nmse": pick.nmse, "macs_saved_fraction": pick.macs_saved_fraction, "dense": pick.dense,
                  "rounds": [dict(zip(("layer_nmse_budget", "network_nmse", "macs_saved_fraction"), r))
                             for r in pick.rounds]}  # fmt: skip

    def chosen(n: str, t: LayerTuning) -> dict:
        """The row of the setting written for layer ``n``: its least Theta, or the network budget's pick."""
        if cfg.network_nmse is None:
            return t.best
        return pick.points[n] or {"dense": True}

    rows = [{"layer": n, **chosen(n, t), "evaluations": len(t.history), "seconds": s,
             "front": [{k: f[k] for k in ("input_dim", "hash_size", "nmse", "compression_ratio")} for f in t.front]}
            for n, (t, s) in tuned.items()]  # fmt: skip
    header = f"# hwnas lsh-tune --video {cfg.video} --model {name}: per layer the (input_dim, hash_size) of {aim}\n"
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(settings, sort_keys=False))
    print(json.dumps({"video": cfg.video, "model": name, "frames": len(clip), "config": str(out), "layers": rows,
                      **report, "seconds": time.perf_counter() - t0}))  # fmt: skip


#: Subcommands that are not Lightning Trainer methods.
COMMANDS: dict[str, Callable[[list[str]], None]] = {"search": search_main, "bench": bench_main,
                                                    "lsh-tune": lsh_tune_main}  # fmt: skip


def _process_rank() -> int:
    """This process's rank under torchrun or Lightning's DDP launcher (0 when alone)."""
    return int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0)


def _close_live_outputs() -> None:
    """Close progress bars and W&B runs, so that nothing prints after the error sentence."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", [])):
            bar.close()
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=2)


def exit_with(err: BaseException) -> None:
    """End the command with ``err``'s one sentence as the last line on stderr, printed once (by rank 0), code 2."""
    _close_live_outputs()
    if _process_rank() == 0:
        print(f"hwnas: error: {one_sentence(err)}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None


def run_command(argv: Sequence[str]) -> None:
    """Run ``hwnas search|bench|lsh-tune ...``; a user error ends with its one sentence on stderr and exit code 2."""
    try:
        COMMANDS[argv[0]](list(argv[1:]))
    except Exception as exc:
        err = _user_error(exc)
        if err is None or os.environ.get(DEBUG_ENV):
            raise
        exit_with(err)
