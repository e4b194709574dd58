"""Work units below the language: one input file, a byte range of whole lines of a big plain file, or a run
of row groups of a big Parquet file. One big language (English is ~1T tokens in the recipe) then keeps every
worker busy, and a crash redoes only the units in flight.

A unit knows the index (in its file) of its first record, so hold-out keys and record counts are the same
however the language was cut. Cutting a plain file reads it once to count lines (GB/s, no decoding);
compressed files (.gz, .zst) cannot be entered in the middle and are one unit each.
"""
from __future__ import annotations

from dataclasses import dataclass

from .readers import InputFile, LanguageSource


@dataclass(frozen=True)
class Unit:
    label: str
    number: int                         # within the language
    count: int                          # units of the language
    file: int                           # ordinal of the file within the language
    source: InputFile
    span: tuple[int, int] | None        # bytes (txt, jsonl) or row groups (parquet); None: the whole file
    first: int                          # index in the file of the span's first record
    size: int                           # input bytes, for largest-first scheduling

    def describe(self) -> dict:
        """What a finished unit records, so a rerun reuses it only for the same input and cut."""
        return {"file": str(self.source.path), "bytes": self.source.path.stat().st_size,
                "span": list(self.span) if self.span else None, "first": self.first}


def plan_units(src: LanguageSource, unit_bytes: int) -> list[Unit]:
    pieces: list[tuple[int, InputFile, tuple[int, int] | None, int, int]] = []
    for ordinal, f in enumerate(src.files):
        size = f.path.stat().st_size
        if f.kind == "parquet":
            pieces += [(ordinal, f, span, first, n) for span, first, n in _row_group_spans(f, unit_bytes)]
        elif f.compressed or size <= unit_bytes:
            pieces.append((ordinal, f, None, 0, size))
        else:
            pieces += [(ordinal, f, span, first, span[1] - span[0]) for span, first in _line_spans(f, size, unit_bytes)]
    return [Unit(src.label, k, len(pieces), ordinal, f, span, first, size)
            for k, (ordinal, f, span, first, size) in enumerate(pieces)]


def _line_spans(f: InputFile, size: int, unit_bytes: int, block: int = 1 << 24) -> list[tuple[tuple[int, int], int]]:
    """Byte ranges of about `unit_bytes`, each starting at a line, with the number of lines before each."""
    starts = [0]
    with open(f.path, "rb") as stream:
        target = unit_bytes
        while target < size:
            stream.seek(target)
            tail = stream.read(1 << 20)
            while tail and b"\n" not in tail:
                more = stream.read(1 << 20)
                if not more:
                    break
                tail += more
            cut = tail.find(b"\n")
            if cut < 0 or target + cut + 1 >= size:
                break
            starts.append(target + cut + 1)
            target = starts[-1] + unit_bytes
        bounds = starts + [size]
        firsts, lines = [], 0
        for start, stop in zip(bounds, bounds[1:]):
            firsts.append(lines)
            stream.seek(start)
            left = stop - start
            while left > 0:
                data = stream.read(min(block, left))
                lines += data.count(b"\n")
                left -= len(data)
    return [((start, stop), first) for start, stop, first in zip(bounds, bounds[1:], firsts)]


def _row_group_spans(f: InputFile, unit_bytes: int) -> list[tuple[tuple[int, int] | None, int, int]]:
    """Runs of row groups of about `unit_bytes` uncompressed; one span (None) when the file is small."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(f.path).metadata
    groups = [(meta.row_group(i).num_rows, meta.row_group(i).total_byte_size) for i in range(meta.num_row_groups)]
    total = sum(b for _, b in groups)
    if total <= unit_bytes or len(groups) <= 1:
        return [(None, 0, f.path.stat().st_size)]
    spans, start, first, rows, acc = [], 0, 0, 0, 0
    for i, (n, b) in enumerate(groups):
        acc += b
        rows += n
        if acc >= unit_bytes or i == len(groups) - 1:
            spans.append(((start, i + 1), first, acc))
            start, first, acc = i + 1, rows, 0
    return spans
