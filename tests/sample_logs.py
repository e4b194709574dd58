"""Reading back `callbacks.sample_log=true`'s `samples/rank<R>.tsv` (step, micro-batch, epoch, sample ids)."""
from __future__ import annotations

from pathlib import Path


def logged(samples: Path, rank: int = 0) -> list[list[str]]:
    """The rank's lines as fields; none before the run wrote its first."""
    path = samples / f"rank{rank}.tsv"
    return [line.split("\t") for line in path.read_text().splitlines()] if path.exists() else []


def rows_by_step(path: Path) -> dict[int, set[int]]:
    """Step -> the sample ids one rank trained on in it."""
    out: dict[int, set[int]] = {}
    for step, _, _, ids in (line.split("\t") for line in path.read_text().splitlines()):
        out.setdefault(int(step), set()).update(map(int, ids.split(",")))
    return out
