"""One work unit -> its finished folder, and a language cut into units -> one language folder.

A unit is tokenized, framed, split, packed and written into a `.tmp-` folder renamed when complete, with its
record beside it (`unit.json`); once all units of a language are done, their shards are linked (renumbered in
unit order) under one index per split. The same input gives the same bytes however often it was interrupted.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .holdout import Holdout, language_holdout
from .mds_rows import RowWriter, write_index
from .packing import BestFitPacker, split_document
from .readers import BadInput, LanguageSource, file_records
from .shard_settings import ShardSettings
from .tokenizer import TokenizerInfo, load_tokenizer
from .units import Unit
from .write_errors import write_atomically, writing

UNITS = ".units"                 # finished units of languages not yet assembled
UNIT_RECORD = "unit.json"
HELD_OUT = "heldout.jsonl"       # with --parallel: the held-out documents' text and line numbers, for retrieval


class _Split:
    """One output split of a unit: packer, writer (made at the first row: an empty split writes no folder) and counters."""

    def __init__(self, path: Path, s: ShardSettings) -> None:
        self.path, self.settings = path, s
        self.packer = BestFitPacker(s.row_length, s.open_rows, s.min_split)
        self.writer: RowWriter | None = None
        self.docs = self.pieces = self.rows = self.tokens = self.dropped = 0
        self.last_used = 0

    def _write(self, rows) -> None:
        for row in rows:
            if self.writer is None:
                self.writer = RowWriter(self.path, self.settings.row_length, compression=self.settings.compression,
                                        size_limit=self.settings.shard_size)
            self.writer.write_row(row)
            self.rows += 1
            self.tokens += row.used
            self.last_used = row.used

    def add(self, framed: np.ndarray) -> None:
        """One document, already framed with BOS/EOS by the tokenizer."""
        pieces, lost = split_document(framed, self.settings.row_length, self.settings.min_tail)
        self.docs += 1
        self.pieces += len(pieces)
        self.dropped += lost
        for p in pieces:
            closed = self.packer.add(p)
            if closed:
                self._write(closed)

    def finish(self) -> dict:
        self._write(self.packer.finish())
        if self.writer is not None:
            self.writer.finish()
        # The unit's one final partial row does not count against packing efficiency.
        partial = self.rows and self.last_used < self.settings.row_length
        full_rows, full_tokens = self.rows - partial, self.tokens - (self.last_used if partial else 0)
        return {"docs": self.docs, "pieces": self.pieces, "rows": self.rows, "tokens": self.tokens,
                "full_rows": full_rows, "full_tokens": full_tokens, "dropped": self.dropped}


class _ThrottledReport:
    """Token counts for the progress bars, sent at most every 0.2 s: a queue message costs a worker ~50 us."""

    def __init__(self, progress, label: str) -> None:
        self.progress, self.label = progress, label
        self.tokens, self.since = 0, time.monotonic()

    def add(self, tokens: int) -> None:
        self.tokens += tokens
        if time.monotonic() - self.since > 0.2:
            self.send()

    def send(self) -> None:
        if self.progress is not None and self.tokens:
            self.progress.put((self.label, self.tokens))
        self.tokens, self.since = 0, time.monotonic()


def unit_folder(out_root: Path, unit: Unit) -> Path:
    """Where a finished unit lives: a one-unit language is written as the language folder itself."""
    return out_root / unit.label if unit.count == 1 else out_root / UNITS / unit.label / str(unit.number)


def process_unit(unit: Unit, src: LanguageSource, out_root: Path, tok: TokenizerInfo, s: ShardSettings,
                 holdout: Holdout | None, progress=None) -> dict:
    """Tokenize, frame, split, pack and write one unit into a `.tmp-` folder renamed when complete; returns its
    record (the manifest entry of a one-unit language). A write that fails (a full disk) raises an OSError
    naming the folder; the partial folder is removed."""
    final = unit_folder(out_root, unit)
    tmp = final.with_name(f".tmp-{final.name}" if unit.count > 1 else f".tmp-{unit.label}")
    try:
        with writing(final):
            for leftover in (tmp, final):
                shutil.rmtree(leftover, ignore_errors=True)
            if holdout is None:       # a one-unit language decides its hold-out from its own records
                holdout = language_holdout(src, s.seed, s.val_fraction, s.val_docs, s.text_field, s.max_chars, whole=True)
            record = _write_unit(unit, tmp, tok, s, holdout, progress)
            if unit.count > 1:
                write_atomically(tmp / UNIT_RECORD, json.dumps(record, sort_keys=True))
            else:
                record = language_entry(src, [record], holdout, s.row_length)
            os.replace(tmp, final)
            return record
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_unit(unit: Unit, tmp: Path, tok: TokenizerInfo, s: ShardSettings, holdout: Holdout, progress) -> dict:
    # One thread per worker: data_prep's parallelism is its workers (tokenizers' own pool would oversubscribe them)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tokenizer = load_tokenizer(tok.path)
    tmp.mkdir(parents=True)
    train, val = _Split(tmp / "train", s), _Split(tmp / "val", s)
    held_out_text = open(tmp / HELD_OUT, "w", encoding="utf-8") if s.parallel else None
    bad = BadInput()
    batch: list[tuple[int, str | bytes]] = []
    report = _ThrottledReport(progress, unit.label)

    def flush() -> None:
        encoded = tokenizer.encode_framed([t for _, t in batch])
        for (index, text), framed in zip(batch, encoded):
            if holdout.is_val(unit.file, index, unit.source.held_out):
                val.add(framed)
                if held_out_text is not None:
                    held_out_text.write(json.dumps({"line": index, "text": text.decode() if isinstance(text, bytes) else text},
                                                   ensure_ascii=False) + "\n")
            else:
                train.add(framed)
        report.add(sum(map(len, encoded)))
        batch.clear()

    chars = 0
    for record in file_records(unit.source, bad, s.text_field, s.max_chars, utf8=True, span=unit.span, first=unit.first):
        batch.append(record)
        chars += len(record[1])
        if chars >= s.batch_chars:
            flush()
            chars = 0
    if batch:
        flush()
    report.send()
    if held_out_text is not None:
        held_out_text.close()
    return {"unit": unit.describe(), "train": train.finish(), "val": val.finish(), "bad": bad.to_dict()}


def language_entry(src: LanguageSource, records: list[dict], holdout: Holdout, row_length: int) -> dict:
    """The manifest entry of a language from its units' records."""
    def total(split: str) -> dict:
        parts = [r[split] for r in records]
        summed = {k: sum(p[k] for p in parts) for k in ("docs", "pieces", "rows", "tokens")}
        slots, full = sum(p["full_rows"] for p in parts) * row_length, sum(p["full_tokens"] for p in parts)
        return {**summed, "packing_efficiency": round(full / slots, 6) if slots else 1.0}

    bad = BadInput()
    for r in records:
        bad.add(r["bad"])
    entry = {"train": total("train"), "val": total("val"), "bad": bad.to_dict(), "layout": src.layout, "units": len(records),
             "dropped_tail_tokens": sum(r[split]["dropped"] for r in records for split in ("train", "val"))}
    if not entry["val"]["rows"]:
        entry["val_note"] = holdout.note or ("its test/ files hold no usable documents" if holdout.by_test_files
                                             else "no document scored below --val-fraction")
    return entry


def assemble_language(src: LanguageSource, out_root: Path, records: list[dict], holdout: Holdout, row_length: int) -> dict:
    """A language cut into units becomes one folder: each split's shards, renumbered in unit order, linked (not
    copied) from the unit folders under one index.json; the same bytes however the build was interrupted."""
    tmp, final = out_root / f".tmp-{src.label}", out_root / src.label
    units = out_root / UNITS / src.label
    for leftover in (tmp, final):
        shutil.rmtree(leftover, ignore_errors=True)
    with writing(final):
        for split in ("train", "val"):
            shards = []
            for number in range(len(records)):
                index = units / str(number) / split / "index.json"
                if not index.exists():
                    continue
                for shard in json.loads(index.read_text())["shards"]:
                    shards.append(_relinked(shard, units / str(number) / split, tmp / split, len(shards)))
            if shards:
                write_index(tmp / split, shards)
        if src_parallel := [units / str(n) / HELD_OUT for n in range(len(records)) if (units / str(n) / HELD_OUT).exists()]:
            tmp.mkdir(parents=True, exist_ok=True)
            with open(tmp / HELD_OUT, "wb") as f:
                for part in src_parallel:
                    f.write(part.read_bytes())
        tmp.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    return language_entry(src, records, holdout, row_length)


def _relinked(shard: dict, source: Path, target: Path, number: int) -> dict:
    """A shard's index entry under its new number, its file hard-linked (copied across file systems) into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    shard = json.loads(json.dumps(shard))
    for form in ("raw_data", "zip_data"):
        stored = shard.get(form)
        if not stored:
            continue
        old = stored["basename"]
        new = f"shard.{number:05}.mds" + old.split(".mds", 1)[1]
        stored["basename"] = new
        if (source / old).exists():
            try:
                os.link(source / old, target / new)
            except OSError:
                shutil.copyfile(source / old, target / new)
    return shard


def finished_units(out: Path, plans: dict[str, list[Unit]]) -> dict[str, dict[int, dict]]:
    """Records of the units a previous run finished, for the same input and cut; any other unit folder is removed."""
    finished: dict[str, dict[int, dict]] = {}
    for label, units in plans.items():
        folder = out / UNITS / label
        if len(units) == 1 or not folder.is_dir():
            continue
        for unit in units:
            record_file = folder / str(unit.number) / UNIT_RECORD
            if record_file.exists() and json.loads(record_file.read_text()).get("unit") == unit.describe():
                finished.setdefault(label, {})[unit.number] = json.loads(record_file.read_text())
            else:
                shutil.rmtree(folder / str(unit.number), ignore_errors=True)
    return finished
