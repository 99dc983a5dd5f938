"""``python -m hwnas_pl`` runs the ``hwnas`` command."""

from hwnas_pl.cli import cli_main

if __name__ == "__main__":
    cli_main()
