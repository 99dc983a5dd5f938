"""HW-NAS-Bench (Li et al., ICLR 2021) device costs of NAS-Bench-201 cells, read from its published pickle.

``HW-NAS-Bench-v1_0.pickle`` (the user's download; GATECH-EIC/HW-NAS-Bench) holds, as its API
(``HWNASBenchAPI.query_by_index``) reads it, ``data["nasbench201"][dataset][metric][index]`` for the datasets
``cifar10``, ``cifar100`` and ``ImageNet16-120`` and the metrics :data:`NB201_METRICS` (latency in ms, energy in
mJ, measured on an edge GPU (Jetson TX2), a Raspberry Pi 4, an Edge TPU and a Pixel 3, estimated for the Eyeriss
ASIC and an FPGA), and ``data["nasbench201"][dataset]["config"][index]``, each with the cell's ``arch_str``, which
maps the benchmark's indices to cells. The pickle is unpickled with only plain containers and numbers allowed.
The FBNet half of the file prices another space (22 layers of 9 blocks) than the MBConv space here, and is not read.
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
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")


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


@register_cost_model("hw_nas_bench")
class HWNASBenchModel(CostModel):
    """HW-NAS-Bench's NAS-Bench-201 costs (all minimised) for one dataset.

    Args:
        space: a NAS-Bench-201 space.
        path: the ``HW-NAS-Bench-v1_0.pickle`` file.
        dataset: ``cifar10``, ``cifar100`` or ``ImageNet16-120``.
        metrics: the columns to return (default: every latency and energy of :data:`NB201_METRICS`).
    """

    def __init__(
        self, space: SearchSpace, path: str | Path, dataset: str = "cifar10", metrics: Sequence[str] | None = None
    ) -> None:
        super().__init__(space)
        if space.name != "nasbench201":
            raise ConfigError(f"HW-NAS-Bench prices NAS-Bench-201 cells; the search space is {space.name}.")
        if dataset not in DATASETS:
            raise ConfigError(f"HW-NAS-Bench dataset '{dataset}' is unknown; expected one of: {', '.join(DATASETS)}.")
        self.path = Path(path)
        if not self.path.is_file():
            raise UserInputError(
                f"HW-NAS-Bench file '{self.path}' does not exist; expected HW-NAS-Bench-v1_0.pickle from the "
                "GATECH-EIC/HW-NAS-Bench repository."
            )
        try:
            with self.path.open("rb") as f:
                data = _PlainUnpickler(f).load()
            table = data["nasbench201"][dataset]
        except (pickle.UnpicklingError, KeyError, TypeError, EOFError) as err:
            raise UserInputError(f"HW-NAS-Bench file '{self.path}' has no nasbench201/{dataset} table in its format "
                                 f"({type(err).__name__}: {err}).") from None  # fmt: skip
        wanted = list(metrics) if metrics is not None else [m for m in NB201_METRICS if "intensity" not in m]
        unknown = [m for m in wanted if m not in NB201_METRICS or m not in table]
        if unknown:
            raise ConfigError(f"HW-NAS-Bench has no metric '{unknown[0]}' for {dataset}; expected one of: "
                              f"{', '.join(m for m in NB201_METRICS if m in table)}.")  # fmt: skip
        self.directions = {m: "min" for m in wanted}
        self.index = {space.validate(str(c["arch_str"])): i for i, c in enumerate(table["config"])}
        self.values = {m: np.asarray(table[m], dtype=float) for m in wanted}
        self.dataset = dataset

    def _evaluate(self, archs: list[Any], out: dict[str, Any]) -> None:
        missing = [a for a in archs if a not in self.index]
        if missing:
            raise UserInputError(
                f"HW-NAS-Bench file '{self.path}' has no entry for {self.space.to_string(missing[0])}."
            )
        idx = np.array([self.index[a] for a in archs], dtype=int)
        for metric, values in self.values.items():
            out[metric] = values[idx]
