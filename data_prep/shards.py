"""Per-language text -> tokenized, packed MDS shards plus a manifest.

    python -m data_prep.shards --input DIR --tokenizer FILE.model --out DIR --row-length N [--workers N]

Each language becomes `OUT/<lang>/{train,val}/` (MDS: `input_ids` ndarray:uint32:<row length>,
padding id 0; `cu_seqlens` ndarray:int32 piece boundaries within the row). Validation
documents are chosen by a hash of (seed, document index), so parallel corpora hold out the same
documents in every language. Languages are written to a temporary folder and renamed when complete;
the manifest lists complete languages only (rewritten at most once a second, and at the end), so a
rerun skips them and redoes any other.
Worker processes take whole languages, largest first.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .manifest import new_manifest, read_manifest, write_manifest
from .mds_rows import RowWriter, check_compression, parse_size
from .packing import BestFitPacker, split_document
from .readers import BadInput, LanguageSource, discover
from .tokenizer import TokenizerInfo, check_tokenizer, load_tokenizer
from .workers import run_in_workers
from .write_errors import write_problem, writing


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
        for option, check, value in (("--compression", check_compression, self.compression), ("--shard-size", parse_size, self.shard_size)):
            try:
                check(value)
            except ValueError as e:
                raise ValueError(f"{option}: {e}") from None


def holdout_score(seed: int, index: int) -> float:
    """A uniform number per (seed, document index): the same documents are held out in every language."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def validation_indices(source: LanguageSource, s: ShardSettings) -> set[int] | None:
    """With --val-docs: the N usable documents with the lowest hold-out score. None means "use the fraction"."""
    if s.val_docs is None:
        return None
    indices = [i for i, _ in source.records(BadInput(), s.text_field, s.max_chars)]
    return set(sorted(indices, key=lambda i: holdout_score(s.seed, i))[: s.val_docs])


class _Split:
    """One output split of a language: packer, writer and counters."""

    def __init__(self, path: Path, s: ShardSettings) -> None:
        self.packer = BestFitPacker(s.row_length, s.open_rows, s.min_split)
        self.writer = RowWriter(path, s.row_length, compression=s.compression, size_limit=s.shard_size)
        self.docs = self.pieces = self.rows = self.tokens = self.dropped = 0
        self.last_used = 0
        self.row_length = s.row_length
        self.min_tail = s.min_tail

    def _write(self, rows) -> None:
        for row in rows:
            self.writer.write_row(row)
            self.rows += 1
            self.tokens += row.used
            self.last_used = row.used

    def add(self, framed: np.ndarray) -> None:
        """One document, already framed with BOS/EOS by the tokenizer."""
        pieces, lost = split_document(framed, self.row_length, self.min_tail)
        self.docs += 1
        self.pieces += len(pieces)
        self.dropped += lost
        for p in pieces:
            closed = self.packer.add(p)
            if closed:
                self._write(closed)

    def finish(self) -> dict:
        self._write(self.packer.finish())
        self.writer.finish()
        # The language's one final partial row does not count against packing efficiency.
        full_rows = self.rows - (1 if self.last_used < self.row_length else 0)
        full_tokens = self.tokens - (self.last_used if self.last_used < self.row_length else 0)
        efficiency = full_tokens / (full_rows * self.row_length) if full_rows else 1.0
        return {"docs": self.docs, "pieces": self.pieces, "rows": self.rows, "tokens": self.tokens,
                "packing_efficiency": round(efficiency, 6)}


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


def process_language(source: LanguageSource, out_root: Path, tok: TokenizerInfo, s: ShardSettings, progress=None) -> dict:
    """Tokenize, frame, split, pack and write one language; returns its manifest entry. A write that fails
    (a full disk) raises an OSError naming the language's folder; its partial `.tmp-` folder is removed."""
    tmp = out_root / f".tmp-{source.label}"
    try:
        with writing(out_root / source.label):
            return _process_language(source, out_root, tok, s, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _process_language(source: LanguageSource, out_root: Path, tok: TokenizerInfo, s: ShardSettings, progress) -> dict:
    tmp, final = out_root / f".tmp-{source.label}", out_root / source.label
    for leftover in (tmp, final):
        shutil.rmtree(leftover, ignore_errors=True)
    sp = load_tokenizer(tok.path)
    val_set = validation_indices(source, s)
    train, val = _Split(tmp / "train", s), _Split(tmp / "val", s)
    bad = BadInput()
    batch: list[tuple[int, str | bytes]] = []

    def is_val(indices: list[int]) -> list[bool]:
        if val_set is not None:
            return [i in val_set for i in indices]
        return [holdout_score(s.seed, i) < s.val_fraction for i in indices]

    def flush() -> None:
        # One thread per worker (parallelism is ours); the tokenizer adds BOS/EOS (check_tokenizer read them from it)
        # and returns arrays, which skips building a Python int per token.
        encoded = sp.encode([t for _, t in batch], add_bos=True, add_eos=True, num_threads=1, return_type="numpy")
        for held_out, framed in zip(is_val([i for i, _ in batch]), encoded):
            (val if held_out else train).add(framed)
        report.add(sum(map(len, encoded)))
        batch.clear()

    chars = 0
    report = _ThrottledReport(progress, source.label)
    for record in source.records(bad, s.text_field, s.max_chars, utf8=True):
        batch.append(record)
        chars += len(record[1])
        if chars >= s.batch_chars:
            flush()
            chars = 0
    if batch:
        flush()
    report.send()
    entry = {"train": train.finish(), "val": val.finish(), "dropped_tail_tokens": train.dropped + val.dropped,
             "bad": bad.to_dict(), "layout": source.layout}
    os.replace(tmp, final)
    return entry


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"output folder {out} is not writable ({e.strerror}); choose another --out") from None


def build_shards(input_dir: str | Path, tokenizer: str | Path, out: str | Path, settings: ShardSettings,
                 workers: int = 1, languages: list[str] | None = None, command: list[str] | None = None,
                 show_progress: bool = True) -> dict:
    """Build (or complete) a shard folder; every check runs before any language is processed."""
    settings.validate()
    out = Path(out)
    sources = discover(input_dir, languages)
    tok = check_tokenizer(tokenizer)
    check_writable(out)
    manifest = read_manifest(out)
    if manifest is None:
        manifest = new_manifest(settings.row_length, tok.to_dict(), command or [], asdict(settings))
    else:
        if manifest["row_length"] != settings.row_length:
            raise ValueError(f"{out} holds rows of {manifest['row_length']} tokens, not {settings.row_length}; use another --out")
        if manifest["tokenizer"]["sha256"] != tok.sha256:
            raise ValueError(f"{out} was made with another tokenizer ({manifest['tokenizer']['path']}); use another --out")
    done = set(manifest["languages"])
    todo = sorted((src for label, src in sources.items() if label not in done), key=lambda src: -src.size_bytes())
    if done & set(sources):
        print(f"skipping {len(done & set(sources))} complete languages in {out}", file=sys.stderr)
    start = time.perf_counter()
    last_write = [time.monotonic()]
    try:
        with _Progress(len(todo), show_progress) as bars:

            def record(label: str, entry: dict) -> None:
                manifest["languages"][label] = entry
                # At most once a second: a folder finished but not yet listed is only redone by a rerun, never lost.
                if time.monotonic() - last_write[0] >= 1.0:
                    write_manifest(out, manifest)
                    last_write[0] = time.monotonic()
                bars.done(label)

            if workers <= 1 or len(todo) <= 1:
                for src in todo:
                    record(src.label, process_language(src, out, tok, settings, bars))
            else:
                finished = run_in_workers(lambda src, report: process_language(src, out, tok, settings, report), todo,
                                          workers, on_tokens=lambda label, tokens: bars.put((label, tokens)))
                for i, entry in finished:
                    record(todo[i].label, entry)
    except BaseException:    # Ctrl-C, a worker's error, a full disk: what finished stays finished
        for partial in out.glob(".tmp-*"):       # languages the stopped workers had in flight (a rerun redoes them)
            shutil.rmtree(partial, ignore_errors=True)
        manifest["seconds_last_run"] = round(time.perf_counter() - start, 3)
        with contextlib.suppress(OSError):      # best effort: the error to report is the one that stopped the run
            write_manifest(out, manifest)
        raise
    manifest["seconds_last_run"] = round(time.perf_counter() - start, 3)
    write_manifest(out, manifest)
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
                     f"{t['packing_efficiency']:8.2%} {sum(e['bad'].values()):5d}")
        rows = t["rows"] - 1
        if rows > 0:
            full_slots += rows * manifest["row_length"]
            full_tokens += t["packing_efficiency"] * rows * manifest["row_length"]
    overall = full_tokens / full_slots if full_slots else 1.0
    lines.append(f"overall packing efficiency (final partial row of each language excluded): {overall:.2%}")
    bad = {}
    for e in manifest["languages"].values():
        for k, v in e["bad"].items():
            bad[k] = bad.get(k, 0) + v
    if any(bad.values()):
        lines.append("skipped input: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in bad.items() if v))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m data_prep.shards", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="folder of <lang>_<Script>.txt / .jsonl(.gz) / <lang>_<Script>/train/*.parquet")
    ap.add_argument("--tokenizer", required=True, help="SentencePiece model (ours or Gemma 2's tokenizer.model)")
    ap.add_argument("--out", required=True, help="output folder (one MDS folder per language + manifest.json)")
    ap.add_argument("--row-length", type=int, required=True, help="tokens per packed row: 1024 pretrain, 8192 ext/decay")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (each takes whole languages)")
    ap.add_argument("--languages", default=None, help="comma-separated labels to process (default: all)")
    ap.add_argument("--val-fraction", type=float, default=0.01, help="share of documents held out for validation")
    ap.add_argument("--val-docs", type=int, default=None, help="hold out exactly this many documents per language instead")
    ap.add_argument("--seed", type=int, default=0, help="seed of the validation hold-out")
    ap.add_argument("--min-tail", type=int, default=32, help="drop the last piece of a split document if shorter")
    ap.add_argument("--compression", default="zstd", help="MDS compression (zstd, br, gz, snappy, or '' for none)")
    ap.add_argument("--shard-size", default="64mb", help="MDS shard size limit")
    ap.add_argument("--text-field", default="text", help="JSONL field / Parquet column holding the text")
    ap.add_argument("--max-chars", type=int, default=1_000_000, help="skip documents longer than this (counted)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    settings = ShardSettings(
        row_length=args.row_length, val_fraction=args.val_fraction, val_docs=args.val_docs, seed=args.seed,
        min_tail=args.min_tail, compression=args.compression, shard_size=args.shard_size,
        text_field=args.text_field, max_chars=args.max_chars,
    )
    try:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
