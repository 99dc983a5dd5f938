"""Search spaces: one abstraction (:class:`SearchSpace`) serves the supernet, surrogates, searches and tables."""

from hwnas_pl.spaces.analognas import AnalogNASSpace, MacroArch, MainBlock
from hwnas_pl.spaces.base import (
    ArchNetwork,
    SearchSpace,
    create_search_space,
    list_search_spaces,
    register_search_space,
)
from hwnas_pl.spaces.mbconv import MBConvSpace
from hwnas_pl.spaces.nasbench201 import NASBench201Space

__all__ = [
    "AnalogNASSpace",
    "ArchNetwork",
    "MBConvSpace",
    "MacroArch",
    "MainBlock",
    "NASBench201Space",
    "SearchSpace",
    "create_search_space",
    "list_search_spaces",
    "register_search_space",
]
