"""``python -m hwnas_pl`` runs the ``hwnas`` command."""

from hwnas_pl.main import main

if __name__ == "__main__":
    main()
