"""Search spaces: one abstraction serves the supernet, surrogates, searches and tables.

:class:`SearchSpace` is any space; :class:`EncodedSpace` adds fixed-length integer vectors (NSGA-II, LHS, tables).
"""

from hwnas_pl.spaces.analognas import AnalogNASSpace, MacroArch, MainBlock
from hwnas_pl.spaces.base import (
    ArchNetwork,
    EncodedSpace,
    SearchSpace,
    create_search_space,
    list_search_spaces,
    register_search_space,
)
from hwnas_pl.spaces.fbnet import FBNetSpace
from hwnas_pl.spaces.layerwise import LayerwiseSpace
from hwnas_pl.spaces.mbconv import MBConvSpace
from hwnas_pl.spaces.nasbench201 import NASBench201Space

__all__ = [
    "AnalogNASSpace",
    "ArchNetwork",
    "EncodedSpace",
    "FBNetSpace",
    "LayerwiseSpace",
    "MBConvSpace",
    "MacroArch",
    "MainBlock",
    "NASBench201Space",
    "SearchSpace",
    "create_search_space",
    "list_search_spaces",
    "register_search_space",
]
