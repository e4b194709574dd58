"""Checkpoints that survive being killed at any moment: atomic writes, and resume from the newest
checkpoint that reads back (a truncated or corrupt one is reported, set aside, and the previous used)."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from data_prep.write_errors import writing


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes `NAME.tmp`, flushes it to disk, then renames it over `NAME`: a reader sees the old file
    or the new one, never half of one. A failed write (a full disk) removes the temporary file and
    raises an OSError naming `NAME`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with writing(path), open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)      # a full disk gets its space back; the previous checkpoint stays
            raise
        os.replace(tmp, path)


def checkpoint_problem(path: Path, step: int | None = None) -> str | None:
    """None if `path` reads back as a Lightning checkpoint (of global step `step`, if given), else what is
    wrong with it. Tensors are memory-mapped, so this reads the structure, not gigabytes of weights."""
    if not path.is_file():
        return "missing"
    if not zipfile.is_zipfile(path):
        return "not a complete zip archive (truncated?)"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:     # any failure to read back means: do not resume from it
        return f"{type(e).__name__}: {e}"
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "loops" not in checkpoint:
        return "not a Lightning training checkpoint"
    if step is not None and checkpoint.get("global_step") != step:
        return f"it holds step {checkpoint.get('global_step')}, not {step}"
    return None


def newest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest readable `*.ckpt` by modification time. Unreadable newer ones are reported and left in
    place (every rank runs this; none may move files another is reading); the next save replaces them."""
    candidates = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        print(f"warning: checkpoint {path} is unreadable ({problem}); resuming from an older one", flush=True)
    return None


def prune_step_checkpoints(ckpt_dir: Path, keep: int, protect: Path | None) -> list[Path]:
    """Delete all but the newest `keep` step checkpoints (by step). A run killed between Lightning writing a
    new checkpoint and deleting the oldest leaves one more than `keep`, which nothing would ever delete."""
    steps = sorted(ckpt_dir.glob("step*.ckpt"), key=lambda p: p.name)
    removed = [p for p in steps[: max(0, len(steps) - keep)] if p != protect]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


class RollingCheckpoint(ModelCheckpoint):
    """Every-n-steps checkpoints (plus last.ckpt) of which the newest `keep` by step survive, across resumes
    too: Lightning's own top-k bookkeeping lives in the checkpoint and forgets files a killed run left."""

    def __init__(self, keep: int, **kwargs) -> None:
        super().__init__(save_top_k=-1, **kwargs)
        self.keep = keep

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        if trainer.is_global_zero:
            prune_step_checkpoints(Path(self.dirpath), self.keep, protect=Path(filepath))
