"""The ``hwnas`` entry point: answers ``hwnas --help`` without importing Lightning, then hands over to the CLI.

``hwnas --help`` lists every subcommand in well under a second; ``hwnas <subcommand> ...`` (and its own
``--help``) imports :mod:`hwnas_pl.cli`, Lightning and what the command needs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: (subcommand, what it does) in the order ``hwnas --help`` lists them
SUBCOMMANDS = (
    ("fit", "Train a model: hwnas fit --config configs/digits_classifier.yaml"),
    ("validate", "Validate a model on the validation split (--ckpt_path CKPT)"),
    ("test", "Test a model on the test split (--ckpt_path CKPT)"),
    ("predict", "Predict with a model (--ckpt_path CKPT)"),
    ("search", "Population search: hwnas search --config configs/search/nb201_nsga2_lut.yaml"),
    ("bench", "Hardware measurements: hwnas bench lut --space nasbench201 --device cpu"),
    ("lsh-tune", "Per-layer LSH reuse settings by Bayesian optimisation: hwnas lsh-tune --video VIDEO.mp4"),
)

HELP = (
    "usage: hwnas [-h] {" + ",".join(name for name, _ in SUBCOMMANDS) + "} ...\n\n"
    "hwnas: hardware-aware NAS and efficient-inference training on PyTorch Lightning.\n\n"
    "subcommands (`hwnas <subcommand> --help` lists its options):\n"
    + "".join(f"    {name:<10}{what}\n" for name, what in SUBCOMMANDS)
    + "\noptions:\n  -h, --help  show this help message and exit\n"
)


def main(args: Sequence[str] | None = None) -> None:
    """``hwnas``: the top-level help here, everything else in :func:`hwnas_pl.cli.cli_main`."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in ("-h", "--help"):
        print(HELP, end="", flush=True)
        return
    if argv and argv[0] in ("search", "bench", "lsh-tune"):  # no Lightning on these paths
        from hwnas_pl.commands import run_command

        run_command(argv)
        return
    from hwnas_pl.cli import cli_main

    cli_main(None if args is None else argv)  # None: LightningCLI reads sys.argv itself (no double-args warning)


if __name__ == "__main__":
    main()
