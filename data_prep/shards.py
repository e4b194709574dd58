"""Per-language text -> tokenized, packed MDS shards plus a manifest.

    python -m data_prep.shards --input DIR --tokenizer FILE.model --out DIR --row-length N [--workers N]

Each label becomes `OUT/<label>/{train,val}/` (MDS: `input_ids` ndarray:uint32:<row length>, padding id 0;
`cu_seqlens` ndarray:int32 piece boundaries within the row); a split with no rows has no folder, and the
manifest says why (`val_note`). Held-out documents: `holdout.py`. The tokenizer is copied to
`OUT/tokenizer.model`, so the folder is self-contained: copy or sync it anywhere.

Work is cut into units below the language (`units.py`), taken largest first by worker processes. A unit
is written to a `.tmp-` folder and renamed when complete; a language cut into several is assembled (its
shards linked under one index) once all are done, and listed in the manifest, which a rerun reads: after a
crash or a kill -9 the same command redoes only the units that were in flight, and writes the same bytes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .holdout import Holdout, language_holdout
from .manifest import TOKENIZER_FILE, new_manifest, read_manifest, write_manifest
from .mds_rows import RowWriter, check_compression, parse_size, write_index
from .packing import BestFitPacker, split_document
from .readers import BadInput, LanguageSource, discover, file_records
from .remote import check_upload, upload_folder
from .tokenizer import TokenizerInfo, check_tokenizer, file_sha256, load_tokenizer
from .units import Unit, plan_units
from .workers import run_in_workers
from .write_errors import write_atomically, write_problem, writing

UNITS = ".units"                 # finished units of languages not yet assembled
UNIT_RECORD = "unit.json"
HELD_OUT = "heldout.jsonl"       # with --parallel: the held-out documents' text and line numbers, for retrieval


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
    sp = load_tokenizer(tok.path)
    tmp.mkdir(parents=True)
    train, val = _Split(tmp / "train", s), _Split(tmp / "val", s)
    held_out_text = open(tmp / HELD_OUT, "w", encoding="utf-8") if s.parallel else None
    bad = BadInput()
    batch: list[tuple[int, str | bytes]] = []
    report = _ThrottledReport(progress, unit.label)

    def flush() -> None:
        # One thread per worker (parallelism is ours); the tokenizer adds BOS/EOS (check_tokenizer read them from it)
        # and returns arrays, which skips building a Python int per token.
        encoded = sp.encode([t for _, t in batch], add_bos=True, add_eos=True, num_threads=1, return_type="numpy")
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


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"output folder {out} is not writable ({e.strerror}); choose another --out") from None


def place_tokenizer(tok: TokenizerInfo, out: Path) -> TokenizerInfo:
    """The tokenizer travels inside the shard folder (`tokenizer.model`, checked by sha256 wherever it is read),
    so a copy or bucket sync of the folder is all a node needs."""
    inside = out / TOKENIZER_FILE
    if not inside.exists() or file_sha256(inside) != tok.sha256:
        write_atomically(inside, Path(tok.path).read_bytes())
    return replace(tok, path=str(inside.resolve()))


def _finished_units(out: Path, plans: dict[str, list[Unit]]) -> dict[str, dict[int, dict]]:
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


def check_resumable(manifest: dict, out: Path, settings: ShardSettings, tok: TokenizerInfo) -> None:
    if manifest["row_length"] != settings.row_length:
        raise ValueError(f"{out} holds rows of {manifest['row_length']} tokens, not {settings.row_length}; use another --out")
    if manifest["tokenizer"]["sha256"] != tok.sha256:
        raise ValueError(f"{out} was made with another tokenizer (sha256 {manifest['tokenizer']['sha256'][:12]}...); use another --out")
    changed = [f"{k}: {manifest['settings'].get(k)!r} there, {v!r} now" for k, v in asdict(settings).items()
               if k != "batch_chars" and manifest["settings"].get(k) != v]
    if changed:
        raise ValueError(f"{out} was built with other settings ({'; '.join(changed)}); rerun with the same options to "
                         f"finish it, or use another --out")


def build_shards(input_dir: str | Path, tokenizer: str | Path, out: str | Path, settings: ShardSettings,
                 workers: int = 1, languages: list[str] | None = None, command: list[str] | None = None,
                 show_progress: bool = True) -> dict:
    """Build (or complete) a shard folder; every check runs before any unit is processed."""
    settings.validate()
    out = Path(out)
    sources = discover(input_dir, languages, settings.text_field)
    if settings.parallel and (several := sorted(k for k, src in sources.items() if len(src.files) != 1 or src.files[0].kind == "parquet")):
        raise ValueError(f"--parallel needs one .txt or .jsonl file per language (line i the same document in each); "
                         f"{len(several)} are not: {several[:5]}")
    tok = check_tokenizer(tokenizer)
    check_writable(out)
    manifest = read_manifest(out)
    if manifest is None:
        manifest = new_manifest(settings.row_length, {**tok.to_dict(), "path": TOKENIZER_FILE}, command or [], asdict(settings))
    else:
        check_resumable(manifest, out, settings, tok)
    tok = place_tokenizer(tok, out)
    manifest["tokenizer"]["path"] = TOKENIZER_FILE
    manifest.setdefault("empty", {})
    done = set(manifest["languages"]) | set(manifest["empty"])
    if done & set(sources):
        print(f"skipping {len(done & set(sources))} complete languages in {out}", file=sys.stderr)
    for partial in [*out.glob(".tmp-*"), *out.glob(f"{UNITS}/*/.tmp-*")]:     # in flight when a run was killed
        shutil.rmtree(partial, ignore_errors=True)
    todo = {label: src for label, src in sources.items() if label not in done}
    plans = {label: plan_units(src, parse_size(settings.unit_size)) for label, src in todo.items()}
    holdouts = {label: language_holdout(todo[label], settings.seed, settings.val_fraction, settings.val_docs,
                                        settings.text_field, settings.max_chars, whole=False)
                for label, units in plans.items() if len(units) > 1}
    finished = _finished_units(out, plans)
    if reused := sum(map(len, finished.values())):
        print(f"reusing {reused} finished units of {len(finished)} languages in {out}", file=sys.stderr)
    tasks = sorted((u for label, units in plans.items() for u in units if u.number not in finished.get(label, {})),
                   key=lambda u: (-u.size, u.label, u.number))
    start = time.perf_counter()
    last_write, cleanup = [time.monotonic()], []

    def save() -> None:
        write_manifest(out, manifest)
        last_write[0] = time.monotonic()
        for folder in cleanup:       # unit folders go only once the manifest lists their language
            shutil.rmtree(folder, ignore_errors=True)
        cleanup.clear()

    try:
        with _Progress(len(todo), show_progress) as bars:

            def record_language(label: str, entry: dict) -> None:
                if entry["train"]["rows"]:
                    manifest["languages"][label] = entry
                else:            # nothing to train on: listed with the reason, no folder
                    manifest["empty"][label] = entry.get("val_note") if not sum(entry["bad"].values()) else \
                        f"no usable documents ({', '.join(f'{v} {k}' for k, v in entry['bad'].items() if v)})"
                    shutil.rmtree(out / label, ignore_errors=True)
                if len(plans[label]) > 1:
                    cleanup.append(out / UNITS / label)
                # At most once a second: a folder finished but not yet listed is only redone by a rerun, never lost.
                if time.monotonic() - last_write[0] >= 1.0:
                    save()
                bars.done(label)

            def unit_done(unit: Unit, record: dict) -> None:
                if unit.count == 1:
                    return record_language(unit.label, record)
                got = finished.setdefault(unit.label, {})
                got[unit.number] = record
                if len(got) == unit.count:
                    records = [got[n] for n in range(unit.count)]
                    record_language(unit.label, assemble_language(todo[unit.label], out, records, holdouts[unit.label], settings.row_length))

            for label, got in list(finished.items()):          # every unit finished before the last run stopped
                if len(got) == len(plans[label]):
                    record_language(label, assemble_language(todo[label], out, [got[n] for n in range(len(got))],
                                                             holdouts[label], settings.row_length))

            def work(unit: Unit, report) -> dict:
                return process_unit(unit, todo[unit.label], out, tok, settings, holdouts.get(unit.label), report)

            if workers <= 1 or len(tasks) <= 1:
                for unit in tasks:
                    unit_done(unit, work(unit, bars))
            else:
                for i, record in run_in_workers(work, tasks, workers, on_tokens=lambda label, tokens: bars.put((label, tokens))):
                    unit_done(tasks[i], record)
    except BaseException:    # Ctrl-C, a worker's error, a full disk: what finished stays finished
        for partial in [*out.glob(".tmp-*"), *out.glob(f"{UNITS}/*/.tmp-*")]:     # units the stopped workers had in flight
            shutil.rmtree(partial, ignore_errors=True)
        manifest["seconds_last_run"] = round(time.perf_counter() - start, 3)
        with contextlib.suppress(OSError):      # best effort: the error to report is the one that stopped the run
            save()
        raise
    manifest["seconds_last_run"] = round(time.perf_counter() - start, 3)
    save()
    with contextlib.suppress(OSError):
        (out / UNITS).rmdir()
    return manifest


class _Progress:
    """A bar per language and one overall, both with tokens/s."""

    def __init__(self, languages: int, enabled: bool) -> None:
        self.enabled = enabled
        self.overall = tqdm(total=languages, desc="languages", unit="lang", disable=not enabled, position=0)
        self.tokens = 0
        self.start = time.perf_counter()
        self.bars: dict[str, object] = {}

    def put(self, message: tuple[str, int]) -> None:
        label, tokens = message
        if label not in self.bars:
            self.bars[label] = tqdm(desc=label, unit="tok", unit_scale=True, leave=False, disable=not self.enabled)
        self.bars[label].update(tokens)
        self.tokens += tokens
        rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        self.overall.set_postfix_str(f"{self.tokens:,} tok, {rate:,.0f} tok/s", refresh=False)

    def done(self, label: str) -> None:
        bar = self.bars.pop(label, None)
        if bar is not None:
            bar.close()
        self.overall.update(1)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        for bar in self.bars.values():
            bar.close()
        self.overall.close()


def summary_table(manifest: dict) -> str:
    lines = [f"{'language':10s} {'docs':>7s} {'tokens':>11s} {'rows':>7s} {'val rows':>8s} {'packing':>8s} {'bad':>5s}"]
    full_tokens = full_slots = 0
    for label, e in sorted(manifest["languages"].items()):
        t = e["train"]
        lines.append(f"{label:10s} {t['docs'] + e['val']['docs']:7d} {t['tokens']:11,d} {t['rows']:7d} {e['val']['rows']:8d} "
                     f"{t['packing_efficiency']:8.2%} {sum(e['bad'].values()):5d}" + (f"  no val: {e['val_note']}" if "val_note" in e else ""))
        rows = t["rows"] - e.get("units", 1)         # each unit's final partial row is left out
        if rows > 0:
            full_slots += rows * manifest["row_length"]
            full_tokens += t["packing_efficiency"] * rows * manifest["row_length"]
    for label, why in sorted(manifest.get("empty", {}).items()):
        lines.append(f"{label:10s} not trained: {why}")
    overall = full_tokens / full_slots if full_slots else 1.0
    lines.append(f"overall packing efficiency (final partial row of each unit excluded): {overall:.2%}")
    bad = {}
    for e in manifest["languages"].values():
        for k, v in e["bad"].items():
            bad[k] = bad.get(k, 0) + v
    if any(bad.values()):
        lines.append("skipped input: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in bad.items() if v))
    if missing_val := sum("val_note" in e for e in manifest["languages"].values()):
        lines.append(f"{missing_val} language(s) have no validation rows (reason on their line)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m data_prep.shards", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="folder of <label>.txt/.jsonl[.gz|.zst], <label>.parquet or FineWeb2 <label>/train/*.parquet")
    ap.add_argument("--tokenizer", required=True, help="SentencePiece model (ours or Gemma 2's tokenizer.model)")
    ap.add_argument("--out", required=True, help="output folder (one MDS folder per language + manifest.json)")
    ap.add_argument("--row-length", type=int, required=True, help="tokens per packed row: 1024 pretrain, 8192 ext/decay")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (each takes one unit at a time)")
    ap.add_argument("--languages", default=None, help="comma-separated labels to process (default: all)")
    ap.add_argument("--val-fraction", type=float, default=0.01, help="share of documents held out for validation")
    ap.add_argument("--val-docs", type=int, default=None, help="hold out exactly this many documents per language instead")
    ap.add_argument("--seed", type=int, default=0, help="seed of the validation hold-out")
    ap.add_argument("--min-tail", type=int, default=32, help="drop the last piece of a split document if shorter")
    ap.add_argument("--compression", default="zstd", help="MDS compression (zstd, br, gz, snappy, or '' for none)")
    ap.add_argument("--shard-size", default="64mb", help="MDS shard size limit")
    ap.add_argument("--text-field", default="text", help="JSONL field / Parquet column holding the text")
    ap.add_argument("--max-chars", type=int, default=1_000_000, help="skip documents longer than this (counted)")
    ap.add_argument("--unit-size", default="64mb", help="input bytes per work unit (big files are cut at lines or row groups)")
    ap.add_argument("--parallel", action="store_true", help="line i of every file is the same document (a parallel corpus): "
                    "the held-out lines are kept for retrieval during training")
    ap.add_argument("--upload", default=None, help="then publish the folder to this URL (s3://, gs://, oci://, ...; data.remote=)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    settings = ShardSettings(
        row_length=args.row_length, val_fraction=args.val_fraction, val_docs=args.val_docs, seed=args.seed,
        min_tail=args.min_tail, compression=args.compression, shard_size=args.shard_size,
        text_field=args.text_field, max_chars=args.max_chars, unit_size=args.unit_size, parallel=args.parallel,
    )
    try:
        if args.upload:
            check_upload(args.out, args.upload)
        manifest = build_shards(
            args.input, args.tokenizer, args.out, settings, workers=args.workers,
            languages=args.languages.split(",") if args.languages else None,
            command=["python", "-m", "data_prep.shards", *argv], show_progress=not args.no_progress,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if problem := write_problem(e, args.out):          # a full disk, no permission: finished languages are kept
            print(f"error: {problem}", file=sys.stderr)
            return 2
        if isinstance(e, RuntimeError):                     # a worker died; the languages that finished are in the manifest
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise
    print(summary_table(manifest))
    print(f"wrote {args.out}/manifest.json")
    if args.upload:
        try:
            files = upload_folder(args.out, args.upload)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"uploaded {files} files to {args.upload}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
