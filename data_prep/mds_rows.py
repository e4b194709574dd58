"""Writing packed rows as a local MDS dataset that streaming's `StreamingDataset` reads as its own.

streaming's `MDSWriter` is general (any columns, remote upload threads, per-sample dicts); for our
two fixed columns its per-row encoding and per-folder thread and bookkeeping cost more than packing
the rows, and importing streaming imports torch, which makes every data_prep process and fork heavy.
`RowWriter` writes the same bytes without either: a test checks its folder is byte-identical to
`MDSWriter`'s for the same rows, and another reads our shards with `StreamingDataset` alone.
Format (MDS v2): shard = sample count, offsets, the config JSON, samples; sample = length of the
variable column, cu_seqlens (shape header + int32), input_ids (fixed uint32 row); folder = shards
plus index.json listing them, each file with its xxh64 (streaming's `hashes`), so that a shard damaged in a
copy, a sync or a download is caught where streaming checks (`validate_hash`) and by `data_prep.verify`.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import xxhash
import zstd

from .packing import Row

_SHAPE_DTYPE = {"uint8": 0, "uint16": 1}          # MDS ndarray shape-header dtype codes (streaming's NDArray table)
_SIZE_UNITS = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
HASH = "xxh64"          # fast (GB/s), and one streaming knows


def parse_size(size: int | str) -> int:
    """'64mb' -> bytes, with streaming's binary units."""
    if isinstance(size, int):
        return size
    text = size.strip().lower()
    for suffix, unit in _SIZE_UNITS.items():
        if text.endswith(suffix):
            try:
                return int(float(text[: -len(suffix)]) * unit)
            except ValueError:
                break
    try:
        return int(text.removesuffix("b"))
    except ValueError:
        raise ValueError(f"shard size {size!r} is not a size such as 64mb") from None


def check_compression(algo: str | None) -> None:
    """zstd (any level) and none need nothing more; other names are checked against streaming's list."""
    if not algo or _zstd_level(algo) is not None:
        return
    from streaming.base.compression import is_compression

    if not is_compression(algo):
        raise ValueError(f"compression {algo!r} is not one streaming knows (zstd, zstd:1..22, br, gz, snappy, or '' for none)")


def _zstd_level(algo: str) -> int | None:
    name, _, level = algo.partition(":")
    if name != "zstd":
        return None
    if not level:
        return 3
    if level.isdigit() and 1 <= int(level) <= 22:
        return int(level)
    raise ValueError(f"compression {algo!r}: a zstd level is 1..22")


def _compress(algo: str, data: bytes) -> tuple[bytes, str]:
    """Compressed bytes and the file extension streaming expects for them."""
    level = _zstd_level(algo)
    if level is not None:
        return zstd.compress(data, level), "zstd"
    from streaming.base.compression import compress, get_compression_extension

    return compress(algo, data), get_compression_extension(algo)


def row_columns(row_length: int) -> dict[str, str]:
    return {"input_ids": f"ndarray:uint32:{row_length}", "cu_seqlens": "ndarray:int32"}


class RowWriter:
    """Packed rows -> `out/shard.NNNNN.mds[.zstd]` + `out/index.json`; call `finish` to write the index."""

    def __init__(self, out: str | Path, row_length: int, compression: str | None = "zstd", size_limit: int | str = "64mb") -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        check_compression(compression)
        self.compression = compression or None
        self.size_limit = parse_size(size_limit)
        columns = row_columns(row_length)
        names = sorted(columns)
        self.config = {
            "column_encodings": [columns[n] for n in names], "column_names": names,
            "column_sizes": [None, 4 * row_length],        # cu_seqlens varies; input_ids is a fixed uint32 row
            "compression": self.compression, "format": "mds", "hashes": [HASH], "size_limit": self.size_limit, "version": 2,
        }
        self._config_bytes = json.dumps(self.config, sort_keys=True).encode()
        self._prefixes: dict[int, bytes] = {}
        self._samples: list[bytes] = []
        self._size = 8 + len(self._config_bytes)           # sample count + final offset + config
        self.shards: list[dict] = []

    def _prefix(self, n: int) -> bytes:
        """The bytes before a row's boundaries: the variable column's length, then its 1-d shape header."""
        prefix = self._prefixes.get(n)
        if prefix is None:
            if n < 1 << 8:
                shape = bytes([(1 << 2) | _SHAPE_DTYPE["uint8"], n])
            else:
                shape = bytes([(1 << 2) | _SHAPE_DTYPE["uint16"]]) + struct.pack("<H", n)
            prefix = self._prefixes[n] = struct.pack("<I", len(shape) + 4 * n) + shape
        return prefix

    def write_row(self, row: Row) -> None:
        sample = b"".join((self._prefix(len(row.cu)), row.cu.astype(np.int32, copy=False).tobytes(),
                           row.ids.astype(np.uint32, copy=False).tobytes()))
        size = len(sample) + 4                             # and its offset
        if self.size_limit and self._samples and self._size + size > self.size_limit:
            self._flush()
        self._samples.append(sample)
        self._size += size

    def _flush(self) -> None:
        n = len(self._samples)
        head = 4 + 4 * (n + 1) + len(self._config_bytes)
        offsets = np.zeros(n + 1, dtype=np.uint32)
        np.cumsum([len(s) for s in self._samples], out=offsets[1:])
        offsets += head
        raw = b"".join((np.uint32(n).tobytes(), offsets.tobytes(), self._config_bytes, *self._samples))
        raw_name = f"shard.{len(self.shards):05}.mds"
        entry = {"samples": n, "raw_data": file_info(raw_name, raw), "zip_data": None}
        data, name = raw, raw_name
        if self.compression:
            data, extension = _compress(self.compression, raw)
            name = f"{raw_name}.{extension}"
            entry["zip_data"] = file_info(name, data)
        (self.out / name).write_bytes(data)
        self.shards.append({**entry, **self.config})
        self._samples = []
        self._size = 8 + len(self._config_bytes)

    def finish(self) -> None:
        if self._samples:
            self._flush()
        write_index(self.out, self.shards)


def file_info(name: str, data: bytes) -> dict:
    """A shard file's entry in index.json: its name, size and hash."""
    return {"basename": name, "bytes": len(data), "hashes": {HASH: xxhash.xxh64(data).hexdigest()}}


def write_index(folder: Path, shards: list[dict]) -> None:
    """`index.json` as streaming's MDSWriter writes it."""
    with open(folder / "index.json", "w") as f:
        json.dump({"shards": shards, "version": 2}, f, sort_keys=True)
