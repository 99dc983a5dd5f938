"""hwnas_pl: hardware-aware neural architecture search and efficient-inference training on PyTorch Lightning.

Importing the package is cheap: subpackages are imported where they are used.
"""

__version__ = "0.1.0"
