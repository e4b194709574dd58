"""Per-language text -> tokenized, packed MDS shards plus a manifest.

    python -m data_prep.shards --input DIR --tokenizer TOKENIZER --out DIR --row-length N [--workers N]

Each label becomes `OUT/<label>/{train,val}/` (MDS: `input_ids` ndarray:uint32:<row length>, padding id 0;
`cu_seqlens` ndarray:int32 piece boundaries within the row); a split with no rows has no folder, and the
manifest says why (`val_note`). Held-out documents: `holdout.py`. TOKENIZER is a SentencePiece
`.model`, a `tokenizer.json` or a released model's folder; it is copied into OUT (`tokenizer.model` or
`tokenizer.json` with the files that declare its roles), so the folder is self-contained: copy or sync it anywhere.

Work is cut into units below the language (`units.py`), taken largest first by worker processes. A unit
is written to a `.tmp-` folder and renamed when complete; a language cut into several is assembled (its
shards linked under one index) once all are done (`unit_writing.py`), and listed in the manifest, which a
rerun reads: after a crash or a kill -9 the same command redoes only the units that were in flight, and
writes the same bytes. This file orchestrates and checks; options: `shard_settings.py`; bars and the
summary table: `build_report.py`.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from .build_report import Progress, summary_table
from .holdout import language_holdout
from .manifest import new_manifest, read_manifest, write_manifest
from .mds_rows import parse_size
from .readers import discover
from .remote import check_upload, upload_folder
from .shard_settings import ShardSettings
from .tokenizer import TokenizerInfo, check_tokenizer, file_sha256, load_tokenizer
from .unit_writing import UNITS, assemble_language, finished_units, process_unit
from .units import Unit, plan_units
from .workers import run_in_workers
from .write_errors import write_atomically, write_problem


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"output folder {out} is not writable ({e.strerror}); choose another --out") from None


def place_tokenizer(tok: TokenizerInfo, out: Path) -> tuple[TokenizerInfo, list[str]]:
    """The tokenizer travels inside the shard folder (`tokenizer.model` or `tokenizer.json`, with the files beside a
    tokenizer.json that declare its roles; checked by sha256 wherever it is read), so a copy or bucket sync of the
    folder is all a node needs. Returns the placed tokenizer and its companion files' names."""
    loaded = load_tokenizer(tok.path)
    inside, companions = out / loaded.file_name, loaded.companion_files()
    if not inside.exists() or file_sha256(inside) != tok.sha256:
        write_atomically(inside, Path(tok.path).read_bytes())
    for companion in companions:
        if companion.resolve() != (out / companion.name).resolve():
            write_atomically(out / companion.name, companion.read_bytes())
    return replace(tok, path=str(inside.resolve())), [c.name for c in companions]


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
        manifest = new_manifest(settings.row_length, tok.to_dict(), command or [], asdict(settings))
    else:
        check_resumable(manifest, out, settings, tok)
    tok, companions = place_tokenizer(tok, out)
    manifest["tokenizer"].update(path=Path(tok.path).name, companions=companions)
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
    finished = finished_units(out, plans)
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
        with Progress(len(todo), show_progress) as bars:

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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m data_prep.shards", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="folder of <label>.txt/.jsonl[.gz|.zst], <label>.parquet or FineWeb2 <label>/train/*.parquet")
    ap.add_argument("--tokenizer", required=True, help="a SentencePiece .model (ours, Gemma 2's), a tokenizer.json, or a released model's folder")
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
    from data_prep.quick_exit import freeze_at_exit

    freeze_at_exit()
    sys.exit(main())
