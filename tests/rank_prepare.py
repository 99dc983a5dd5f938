"""A CIFARDataModule that records which ranks ran prepare_data and setup (for the DDP test)."""

from __future__ import annotations

import os
from pathlib import Path

from hwnas_pl.datamodules import CIFARDataModule


class RecordingCIFAR(CIFARDataModule):
    def __init__(self, record_dir: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.record_dir = Path(record_dir)

    def _record(self, what: str) -> None:
        self.record_dir.mkdir(parents=True, exist_ok=True)
        rank = self.trainer.global_rank if self.trainer is not None else -1
        (self.record_dir / f"{what}_rank{rank}_pid{os.getpid()}").write_text(str(self.batch_size_per_device))

    def prepare_data(self) -> None:
        self._record("prepare")
        super().prepare_data()

    def setup(self, stage=None) -> None:
        super().setup(stage)
        self._record("setup")
