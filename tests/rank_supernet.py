"""A callback that writes each rank's PRP-NAS state to ``<out_dir>/rank<R>.json`` (for the DDP test)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class DumpSupernetState(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_fit_end(self, trainer, pl_module) -> None:
        update = next(c for c in trainer.callbacks if type(c).__name__ == "ParetoRankAlphaUpdate")
        pruning = next(c for c in trainer.callbacks if type(c).__name__ == "OperationPruning")
        record = {
            "world_size": trainer.world_size,
            "alpha": pl_module.alpha.detach().cpu().tolist(),
            "pruned": [list(p) for p in pl_module.pruned],
            "updates": update.updates,
            "fronts": [h["front"] for h in update.history],
            "records": pruning.records,
            "parameter_sums": {n: float(p.detach().double().sum()) for n, p in pl_module.named_parameters()},
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
