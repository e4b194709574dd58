"""`logs/metrics.csv` that survives a resume: Lightning's CSV writer deletes the file when a run starts
in a folder that has one, so a resumed run would lose every row from before the interruption.

Here a resumed run keeps the rows logged up to its checkpoint (Lightning's logging counter, which the
checkpoint holds, at most the checkpoint's), drops those a killed run logged after it (the resumed run
logs them again) and appends. The file is flushed at every checkpoint save, so a SIGKILL loses no row
that the checkpoint's weights had produced.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from mmbert_pl.files.checkpointing import checkpoint_metadata


def logged_batches(checkpoint: Path) -> int:
    """The value of Lightning's logger step counter (`_batches_that_stepped`) stored in a checkpoint."""
    ckpt = checkpoint_metadata(checkpoint)
    return ckpt["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"]


def _step(row: dict) -> float | None:
    try:
        return float(row["step"])
    except (TypeError, ValueError, KeyError):      # a line cut short by a kill or a full disk
        return None


class _ResumingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_through: int | None) -> None:
        self.keep_through = keep_through             # rows with step <= this survive; None: a run from scratch
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if self.keep_through is None:                # earlier rows are of steps this run trains again
            path.unlink()
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = [r for r in reader if (s := _step(r)) is not None and s <= self.keep_through and None not in r.values()]
        self.metrics_keys = sorted(header)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)


class ResumingCSVLogger(CSVLogger):
    """CSVLogger that keeps the rows up to `keep_through` (a resumed checkpoint's logger step) and appends."""

    def __init__(self, save_dir: Path, keep_through: int | None) -> None:
        super().__init__(save_dir, name="logs", version="")
        self._keep_through = keep_through

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumingWriter(self.log_dir, self._keep_through)
        return self._experiment

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self.save()
