"""The options of a shard build (`python -m data_prep.shards`), checked before any input is read; a rerun into
the same folder must use the same ones (the manifest keeps them)."""
from __future__ import annotations

from dataclasses import dataclass

from .mds_rows import check_compression, parse_size


@dataclass(frozen=True)
class ShardSettings:
    row_length: int
    val_fraction: float = 0.01
    val_docs: int | None = None
    seed: int = 0
    min_tail: int = 32
    open_rows: int = 32
    min_split: int = 8
    compression: str = "zstd"
    shard_size: str = "64mb"
    text_field: str = "text"
    max_chars: int = 1_000_000
    unit_size: str = "64mb"       # input bytes per work unit (a plain file is cut at lines, Parquet at row groups)
    parallel: bool = False        # line i of every language's file is the same document: keep held-out text for retrieval
    batch_chars: int = 1 << 16    # text (chars or UTF-8 bytes) per tokenizer call: ~64K keeps its output in cache

    def validate(self) -> None:
        if self.row_length < 16:
            raise ValueError(f"--row-length must be >= 16, got {self.row_length}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_docs is not None and self.val_docs < 0:
            raise ValueError(f"--val-docs must be >= 0, got {self.val_docs}")
        if not 1 <= self.min_tail <= self.row_length:
            raise ValueError(f"--min-tail must be in [1, row length], got {self.min_tail}")
        for option, check, value in (("--compression", check_compression, self.compression), ("--shard-size", parse_size, self.shard_size),
                                     ("--unit-size", parse_size, self.unit_size)):
            try:
                check(value)
            except ValueError as e:
                raise ValueError(f"{option}: {e}") from None
