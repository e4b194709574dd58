"""Checkpoints that survive being killed at any moment: atomic writes, and resume from the newest
checkpoint that reads back (a truncated or corrupt one is reported, set aside, and the previous used).

A checkpoint is one file (consolidated), or under `trainer.checkpoint_format=sharded` a folder of the same
name that every rank writes its shards into (torch.distributed.checkpoint, plus Lightning's `meta.pt` with
the loop state); `python -m mmbert_pl.consolidate` turns such a folder into the file.
"""
from __future__ import annotations

import os
import shutil
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


SHARDED_META = "meta.pt"         # Lightning's: everything but weights and optimizer state
SHARDED_INDEX = ".metadata"      # torch.distributed.checkpoint's: written last, once every rank's shards are


def is_sharded_checkpoint(path: Path) -> bool:
    """A sharded checkpoint folder (complete or not: `checkpoint_problem` says which)."""
    return path.is_dir() and any((path / name).exists() for name in (SHARDED_INDEX, SHARDED_META))


def checkpoint_problem(path: Path, step: int | None = None) -> str | None:
    """None if `path` reads back as a Lightning checkpoint (of global step `step`, if given), else what is
    wrong with it. Tensors are memory-mapped (a sharded folder: only its `meta.pt` is read), so this reads the
    structure, not gigabytes of weights."""
    if path.is_dir():
        for name in (SHARDED_INDEX, SHARDED_META):        # Lightning writes meta.pt after the index
            if not (path / name).is_file():
                return f"a sharded checkpoint without {name} (its save did not finish)"
    elif not path.is_file():
        return "missing"
    elif not zipfile.is_zipfile(path):
        return "not a complete zip archive (truncated?)"
    try:
        checkpoint = checkpoint_metadata(path)
    except Exception as e:     # any failure to read back means: do not resume from it
        where = f"its {SHARDED_META} does not read back: " if path.is_dir() else ""
        return f"{where}{type(e).__name__}: {e}"
    weights = () if path.is_dir() else ("state_dict",)    # a folder's weights are in its shards
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in (*weights, "loops")):
        return "not a Lightning training checkpoint"
    if step is not None and checkpoint.get("global_step") != step:
        return f"it holds step {checkpoint.get('global_step')}, not {step}"
    return None


def checkpoint_metadata(path: Path) -> dict:
    """A checkpoint without reading its tensors: the file memory-mapped, or a sharded folder's `meta.pt`."""
    if path.is_dir():
        return torch.load(path / SHARDED_META, map_location="cpu", weights_only=False)
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def remove_checkpoint(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def move_into_place(tmp: Path, path: Path) -> None:
    """`tmp` (a file or a sharded folder) becomes `path`. File over file is one atomic rename; where a folder is
    involved the old one is first renamed `NAME.old`, which `newest_checkpoint` also reads, so a kill between the
    two renames still leaves a checkpoint to resume from."""
    if not tmp.is_dir() and not path.is_dir():
        os.replace(tmp, path)
        return
    old = path.with_name(path.name + ".old")
    remove_checkpoint(old)
    if path.exists():
        os.rename(path, old)
    os.rename(tmp, path)
    remove_checkpoint(old)


def newest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest readable `*.ckpt` (file or sharded folder) by modification time. Unreadable newer ones are
    reported and left in place (every rank runs this; none may move files another is reading); the next save
    replaces them."""
    candidates = sorted([*ckpt_dir.glob("*.ckpt"), *ckpt_dir.glob("*.ckpt.old")], key=lambda p: p.stat().st_mtime_ns,
                        reverse=True)
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
        remove_checkpoint(p)
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
