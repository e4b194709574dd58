"""Which rows every step trained on: `samples/rank<R>.tsv`, a line per micro-batch
(`step`, `micro-batch`, `segment`, comma-separated sample ids of that segment's dataset).

A resumed run first drops the lines of steps after its checkpoint, so the file always lists exactly
what the weights have seen: a killed and resumed run's file equals an uninterrupted run's.
"""
from __future__ import annotations

import os
from pathlib import Path

import lightning as L


class SampleLog(L.Callback):
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._file = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank{trainer.global_rank}.tsv"
        if path.exists():
            kept = [line for line in path.read_text().splitlines(keepends=True)
                    if line.strip() and int(line.split("\t", 1)[0]) < trainer.global_step]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(kept))
            os.replace(tmp, path)
        self._file = open(path, "a")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if "sample_ids" not in batch:
            raise ValueError("callbacks.sample_log needs batches with sample_ids (the MixtureDataModule provides them)")
        ids = ",".join(str(int(i)) for i in batch["sample_ids"])
        self._file.write(f"{trainer.global_step}\t{pl_module.micro_index}\t{trainer.current_epoch}\t{ids}\n")
        self._file.flush()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
