"""data_prep tokenize+pack throughput against the limit: SentencePiece `encode` alone, in one process.

Reads the same text three ways in one run: (1) raw `sp.encode(list_of_docs, num_threads=1)` per
language, no I/O of ours; (2) `data_prep.shards` with one worker (read, encode, frame, pack, write zstd MDS); (3) the
same with two workers. Prints seconds, tokens/s and the ratios the targets are set on.

    python benchmarks/shard_throughput.py [--input DIR] [--copies 16] [--row-length 1024]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import sentencepiece as spm

from data_prep.shards import ShardSettings, build_shards
from data_prep.tokenizer import train_tokenizer

SAMPLE = Path(__file__).resolve().parents[1] / "mmbert_pl" / "sample" / "ntrex"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=SAMPLE, help="folder of <lang>_<Script>.txt")
    ap.add_argument("--copies", type=int, default=16, help="repeat each file's text this many times (more work to time)")
    ap.add_argument("--row-length", type=int, default=1024)
    ap.add_argument("--vocab-size", type=int, default=8192)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "text"
        data.mkdir()
        for f in sorted(args.input.glob("*_*.txt")):
            (data / f.name).write_text(f.read_text(encoding="utf-8") * args.copies, encoding="utf-8")
        tok = train_tokenizer(args.input, tmp / "tok.model", args.vocab_size, sample_chars=2_000_000)
        sp = spm.SentencePieceProcessor(model_file=tok.path)
        docs = {f.name: f.read_text(encoding="utf-8").splitlines() for f in sorted(data.glob("*.txt"))}

        import streaming  # noqa: F401  (imported once up front, so no run pays for it)

        t = time.perf_counter()
        tokens = sum(len(ids) + 2 for lines in docs.values() for ids in sp.encode(lines, num_threads=1))
        raw = time.perf_counter() - t

        timings = {}
        for workers in (1, 2):
            out = tmp / f"out{workers}"
            t = time.perf_counter()
            build_shards(data, tok.path, out, ShardSettings(row_length=args.row_length), workers=workers, show_progress=False)
            timings[workers] = time.perf_counter() - t
            shutil.rmtree(out)
    mb = sum(len(l.encode()) for lines in docs.values() for l in lines) / 1e6
    print(f"{len(docs)} languages, {mb:.1f} MB of text, {tokens:,} tokens, row length {args.row_length}")
    print(f"{'run':34s} {'seconds':>8s} {'tokens/s':>10s}")
    for name, s in (("sentencepiece encode (limit)", raw), ("data_prep.shards, 1 worker", timings[1]), ("data_prep.shards, 2 workers", timings[2])):
        print(f"{name:34s} {s:8.2f} {tokens / s:10,.0f}")
    print(f"1 worker / raw encode time: {timings[1] / raw:.2f}x (target <= 1.25)")
    print(f"2 workers / 1 worker throughput: {timings[1] / timings[2]:.2f}x (target >= 1.7)")


if __name__ == "__main__":
    main()
