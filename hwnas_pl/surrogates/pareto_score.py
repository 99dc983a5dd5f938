"""HW-PR-NAS's Pareto score as a cost model (thesis §3.2), from a trained ``ParetoRankModule`` checkpoint.

The checkpoint (:class:`~hwnas_pl.modules.ParetoRankModule`) scores any architecture of its space.

``pareto_score`` (max) is the sigmoid of the chosen device head: higher means a better predicted Pareto front, so a
single-objective search on it looks for the whole front at once (the thesis's search; which architectures it keeps
is decided by the search: ``verify_top`` of them are measured for real at the end). The checkpoint is read with
plain ``torch.load`` (no Lightning); its encoding statistics (feature scaling, vocabulary, input shape) encode new
architectures exactly as the training set was encoded. Encodings are cached per architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hwnas_pl.errors import UserInputError
from hwnas_pl.evaluators.base import CostModel, register_cost_model
from hwnas_pl.nn.architecture_encoders import ParetoScoreNet, encode_architectures
from hwnas_pl.spaces.base import SearchSpace


@register_cost_model("pareto_score")
class ParetoScoreModel(CostModel):
    """``pareto_score`` of a ParetoRankModule checkpoint's ``device`` head.

    Args:
        space: the space the checkpoint was trained on.
        checkpoint: the ``.ckpt`` of ``hwnas fit --config configs/hwprnas_nb201.yaml`` (or any ParetoRankModule).
        device: the head to use (default: the first).
        batch_size: architectures per forward pass.
    """

    directions = {"pareto_score": "max"}

    def __init__(self, space: SearchSpace, checkpoint: str | Path, device: str | None = None, batch_size: int = 512):
        super().__init__(space)
        path = Path(checkpoint)
        if not path.is_file():
            raise UserInputError(f"Pareto-score checkpoint '{path}' does not exist; expected the .ckpt of "
                                 "hwnas fit --config configs/hwprnas_nb201.yaml.")  # fmt: skip
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        meta = ckpt.get("hwprnas") if isinstance(ckpt, dict) else None
        if meta is None:
            raise UserInputError(f"'{path}' is not a ParetoRankModule checkpoint (no encoding statistics).")
        if meta["stats"].get("space") not in (None, space.name):
            raise UserInputError(f"'{path}' was trained on the {meta['stats']['space']} space; the search is over "
                                 f"{space.name}.")  # fmt: skip
        self.stats, self.devices = meta["stats"], list(meta["devices"])
        parts = ckpt.get("hyper_parameters", {}).get("parts", ("af", "gcn", "lstm"))
        self.net = ParetoScoreNet(self.stats, self.devices, parts)
        self.net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
        self.net.eval()
        self.head = self.net.device_index(device if device is not None else self.devices[0])
        self.batch_size = batch_size
        self._cache: dict[Any, float] = {}

    def _evaluate(self, archs: list[Any], out: dict[str, Any]) -> None:
        new = [a for a in dict.fromkeys(archs) if a not in self._cache]
        shape, classes = self.stats.get("input_shape", (3, 32, 32)), int(self.stats.get("num_classes", 10))
        for i in range(0, len(new), self.batch_size):
            chunk = new[i : i + self.batch_size]
            views, _ = encode_architectures(self.space, chunk, shape, classes, self.stats)
            with torch.no_grad():
                scores = self.net.score(views, self.head).tolist()
            self._cache.update(zip(chunk, scores))
        out["pareto_score"] = [self._cache[a] for a in archs]
