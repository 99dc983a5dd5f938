"""HW-NAS-Bench (Li et al., ICLR 2021) device costs of NAS-Bench-201 cells and FBNet networks, from its pickle.

``HW-NAS-Bench-v1_0.pickle`` (the user's download; GATECH-EIC/HW-NAS-Bench) holds, as its API reads it:

- **NAS-Bench-201** (``HWNASBenchAPI.query_by_index``): ``data["nasbench201"][dataset][metric][index]`` for the
  datasets ``cifar10``, ``cifar100`` and ``ImageNet16-120`` and the metrics :data:`NB201_METRICS` (latency in ms,
  energy in mJ, measured on an edge GPU (Jetson TX2), a Raspberry Pi 4, an Edge TPU and a Pixel 3, estimated for
  the Eyeriss ASIC and an FPGA), and ``data["nasbench201"][dataset]["config"][index]``, each with the cell's
  ``arch_str``, which maps the benchmark's indices to cells.
- **FBNet** (``fbnet_get_metrics``): one lookup table per metric of :data:`FBNET_METRICS` (no Edge TPU),
  ``data["fbnet"][metric][op_key]``; a network's cost is the sum over its stem, its 22 layers, its header conv,
  its average pool and its classifier of the entries named by :func:`fbnet_op_keys`. The datasets are ``cifar100``
  (32×32 networks, :class:`~hwnas_pl.spaces.fbnet.FBNetSpace` skeleton ``cifar``) and ``ImageNet`` (``imagenet``).

The pickle is unpickled with only plain containers and numbers allowed.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.base import CostModel, register_cost_model
from hwnas_pl.spaces.base import SearchSpace

NB201_METRICS = (
    "edgegpu_latency", "edgegpu_energy", "raspi4_latency", "edgetpu_latency", "pixel3_latency", "eyeriss_latency",
    "eyeriss_energy", "eyeriss_arithmetic_intensity", "fpga_latency", "fpga_energy",
)  # fmt: skip
FBNET_METRICS = (
    "edgegpu_latency", "edgegpu_energy", "raspi4_latency", "pixel3_latency", "eyeriss_latency", "eyeriss_energy",
    "fpga_latency", "fpga_energy",
)  # fmt: skip
DATASETS = {"nasbench201": ("cifar10", "cifar100", "ImageNet16-120"), "fbnet": ("cifar100", "ImageNet")}
#: dataset -> (FBNetSpace skeleton, classes, input size)
FBNET_SKELETONS = {"cifar100": ("cifar", 100, 32), "ImageNet": ("imagenet", 1000, 224)}


class _PlainUnpickler(pickle.Unpickler):
    """Admit only the builtins and NumPy scalar/array reconstruction a table of numbers needs."""

    _ALLOWED = {("builtins", n) for n in ("dict", "list", "tuple", "set", "float", "int", "str")} | {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "ndarray"),
        ("numpy", "dtype"), ("collections", "OrderedDict"),
    }  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected class {module}.{name}")


def fbnet_op_keys(space: SearchSpace, arch: Any, dataset: str) -> list[str]:
    """The lookup-table keys whose entries add up to an FBNet network's cost (HW-NAS-Bench ``fbnet_get_metrics``).

    ``ConvNorm`` (stem and header conv), ``ConvBlock`` (exp, kernel, stride, group of the layer's block) or ``Skip``
    per layer, ``AvgP`` and ``FC``, each with the input height/width, channels and stride of its place.
    """
    from hwnas_pl.spaces.fbnet import STEM_CHANNELS, parse_block

    arch = space.validate(arch)
    _, num_classes, size = FBNET_SKELETONS[dataset]
    sizes = space.resolutions(size)
    keys = [f"ConvNorm_H{size}_W{size}_Cin3_Cout{STEM_CHANNELS}_kernel3_stride{space.stem_stride}_group1"]
    for choice, (c_in, c_out, stride), h in zip(arch, space.layers, sizes):
        if choice == "skip":
            keys.append(f"Skip_H{h}_W{h}_Cin{c_in}_Cout{c_out}_stride{stride}")
        else:
            kernel, expand, groups = parse_block(choice)
            keys.append(f"ConvBlock_H{h}_W{h}_Cin{c_in}_Cout{c_out}_exp{expand}_kernel{kernel}_stride{stride}"
                        f"_group{groups}")  # fmt: skip
    h, c_last, header = sizes[-1], space.layers[-1][1], space.header
    keys.append(f"ConvNorm_H{h}_W{h}_Cin{c_last}_Cout{header}_kernel1_stride1_group1")
    keys.append(f"AvgP_H{h}_W{h}_Cin{header}_Cout{header}_kernel{h}_stride1")
    keys.append(f"FC_Cin{header}_Cout{num_classes}")
    return keys


@register_cost_model("hw_nas_bench")
class HWNASBenchModel(CostModel):
    """HW-NAS-Bench's costs (all minimised) of NAS-Bench-201 cells or FBNet networks for one dataset.

    Args:
        space: a NAS-Bench-201 or an FBNet space (the FBNet skeleton must match the dataset).
        path: the ``HW-NAS-Bench-v1_0.pickle`` file.
        dataset: NAS-Bench-201: ``cifar10``, ``cifar100`` or ``ImageNet16-120``; FBNet: ``cifar100`` or
            ``ImageNet``.
        metrics: the columns to return (default: every latency and energy of the space's metrics).
    """

    def __init__(
        self, space: SearchSpace, path: str | Path, dataset: str = "cifar10", metrics: Sequence[str] | None = None
    ) -> None:
        super().__init__(space)
        if space.name not in DATASETS:
            raise ConfigError(f"HW-NAS-Bench prices NAS-Bench-201 cells and FBNet networks; the search space is "
                              f"{space.name}.")  # fmt: skip
        if dataset not in DATASETS[space.name]:
            raise ConfigError(f"HW-NAS-Bench dataset '{dataset}' is unknown for the {space.name} space; expected "
                              f"one of: {', '.join(DATASETS[space.name])}.")  # fmt: skip
        if space.name == "fbnet" and space.skeleton != FBNET_SKELETONS[dataset][0]:
            wanted = FBNET_SKELETONS[dataset][0]
            raise ConfigError(f"HW-NAS-Bench prices {dataset} FBNet networks with the '{wanted}' skeleton; the space "
                              f"has '{space.skeleton}'.")  # fmt: skip
        self.path = Path(path)
        if not self.path.is_file():
            raise UserInputError(
                f"HW-NAS-Bench file '{self.path}' does not exist; expected HW-NAS-Bench-v1_0.pickle from the "
                "GATECH-EIC/HW-NAS-Bench repository."
            )
        part = space.name  # the pickle's half: "nasbench201" or "fbnet"
        try:
            with self.path.open("rb") as f:
                data = _PlainUnpickler(f).load()
            table = data[part][dataset] if part == "nasbench201" else data[part]
            if not isinstance(table, dict):
                raise TypeError(f"{type(table).__name__} instead of a mapping")
        except (pickle.UnpicklingError, KeyError, TypeError, EOFError) as err:
            where = f"nasbench201/{dataset}" if part == "nasbench201" else "fbnet"
            raise UserInputError(f"HW-NAS-Bench file '{self.path}' has no {where} table in its format "
                                 f"({type(err).__name__}: {err}).") from None  # fmt: skip
        known = NB201_METRICS if part == "nasbench201" else FBNET_METRICS
        wanted = list(metrics) if metrics is not None else [m for m in known if "intensity" not in m]
        unknown = [m for m in wanted if m not in known or m not in table]
        if unknown:
            raise ConfigError(f"HW-NAS-Bench has no metric '{unknown[0]}' for {space.name} {dataset}; expected one "
                              f"of: {', '.join(m for m in known if m in table)}.")  # fmt: skip
        self.directions = {m: "min" for m in wanted}
        self.dataset = dataset
        if part == "nasbench201":
            self.index = {space.validate(str(c["arch_str"])): i for i, c in enumerate(table["config"])}
            self.values = {m: np.asarray(table[m], dtype=float) for m in wanted}
        else:
            self.tables = {m: table[m] for m in wanted}

    def _evaluate(self, archs: list[Any], out: dict[str, Any]) -> None:
        if self.space.name == "fbnet":
            keys = [fbnet_op_keys(self.space, a, self.dataset) for a in archs]
            for metric, lut in self.tables.items():
                missing = next((k for ks in keys for k in ks if k not in lut), None)
                if missing is not None:
                    raise UserInputError(f"HW-NAS-Bench file '{self.path}' has no fbnet {metric} entry for op "
                                         f"'{missing}'.")  # fmt: skip
                out[metric] = np.array([sum(float(lut[k]) for k in ks) for ks in keys])
            return
        missing = [a for a in archs if a not in self.index]
        if missing:
            raise UserInputError(
                f"HW-NAS-Bench file '{self.path}' has no entry for {self.space.to_string(missing[0])}."
            )
        idx = np.array([self.index[a] for a in archs], dtype=int)
        for metric, values in self.values.items():
            out[metric] = values[idx]
