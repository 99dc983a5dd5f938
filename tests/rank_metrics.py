"""A callback that writes each rank's final metrics to ``<out_dir>/rank<R>.json`` (for the DDP test)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class DumpRankMetrics(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.train_samples = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_samples += int(batch[1].shape[0])

    def on_fit_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "global_rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "backend": str(trainer.strategy.process_group_backend),
            "train_samples": self.train_samples,
            "epochs": trainer.current_epoch,
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            "first_weight_sum": float(next(pl_module.parameters()).detach().sum()),
            "parameter_sums": {n: float(p.detach().double().sum()) for n, p in pl_module.named_parameters()},
        }
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
