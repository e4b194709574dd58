"""data_prep tokenize+pack throughput against the limit: the tokenizer's own batch encode alone, in one process.

Reads the same text three ways: (1) load the tokenizer and encode each language's lines in one thread, text
already in memory, no I/O (the limit): SentencePiece `sp.encode(list_of_docs, num_threads=1)`, or for a
`tokenizer.json` the `tokenizers` library's `encode_batch_fast` (the batch encode without character offsets, about
half the time of `encode_batch`; data_prep calls it too) with its thread pool off (TOKENIZERS_PARALLELISM=false,
as data_prep's workers run it), reading each document's ids; (2) `data_prep.shards` with one worker (read, validate,
encode, split, pack, write zstd MDS shards and the manifest); (3) the same with two workers.
Each timed run happens in a fresh process, as `python -m data_prep.shards` would (a worker pool forked
from this script's heap would pay for its size); imports and the text load of (1) are not timed, the
model load is, in all three (data_prep must load it too; Gemma's 256k model takes a while). Shards go
to tmpfs unless --workdir says otherwise: the limit does no disk I/O either.
Runs are interleaved and repeated; the best of each counts. Prints seconds, tokens/s and the two ratios
the targets are set on.

    python benchmarks/shard_throughput.py [--input DIR] [--copies 16] [--row-length 1024] [--repeat 3]
                                          [--tokenizer FILE.model|tokenizer.json|FOLDER | --vocab-size 8192 [--json]]
                                          [--workdir DIR]

`--json` converts the tokenizer trained here to a Hugging Face tokenizer.json (as our exports write it, and as
mmBERT ships Gemma's) and measures with that.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fresh_process import in_fresh_process

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "mmbert_pl" / "sample" / "ntrex"


def raw_encode(text_dir: str, tokenizer: str, method: str = "encode_batch_fast") -> tuple[float, int]:
    """Seconds and tokens (with the framing) of loading the tokenizer and a plain batch encode of every language's lines."""
    docs = [f.read_text(encoding="utf-8").splitlines() for f in sorted(Path(text_dir).glob("*.txt"))]
    if tokenizer.endswith(".json"):
        import os

        from tokenizers import Tokenizer

        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        start = time.perf_counter()
        tok = Tokenizer.from_file(tokenizer)
        encode = getattr(tok, method)
        tokens = sum(len(e.ids) + 2 for lines in docs for e in encode(lines, add_special_tokens=False))
        return time.perf_counter() - start, tokens
    import sentencepiece as spm

    start = time.perf_counter()
    sp = spm.SentencePieceProcessor(model_file=tokenizer)
    tokens = sum(len(ids) + 2 for lines in docs for ids in sp.encode(lines, num_threads=1))
    return time.perf_counter() - start, tokens


def as_tokenizer_json(spm_model: Path, out: Path) -> Path:
    """The SentencePiece model as the tokenizer.json an export writes beside it."""
    from mmbert_pl.files.hf_tokenizer import save_hf_tokenizer

    out.mkdir()
    (out / "config.json").write_text('{"model_type": "modernbert"}')     # transformers 5 picks the converter from it
    save_hf_tokenizer(spm_model, out)
    return out / "tokenizer.json"


def shards(text_dir: str, tokenizer: str, out: str, row_length: int, workers: int) -> tuple[float, int]:
    """Seconds of `build_shards` from scratch, and the tokens it counted."""
    from data_prep.shards import ShardSettings, build_shards

    start = time.perf_counter()
    manifest = build_shards(text_dir, tokenizer, out, ShardSettings(row_length=row_length), workers=workers, show_progress=False)
    seconds = time.perf_counter() - start
    return seconds, sum(e[split]["tokens"] for e in manifest["languages"].values() for split in ("train", "val"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=SAMPLE, help="folder of <lang>_<Script>.txt")
    ap.add_argument("--copies", type=int, default=16, help="repeat each file's text this many times (more work to time)")
    ap.add_argument("--row-length", type=int, default=1024)
    ap.add_argument("--tokenizer", type=Path, default=None, help="a SentencePiece model, a tokenizer.json or a model folder "
                                                                  "(e.g. a released mmBERT's); default: train one on --input")
    ap.add_argument("--json", action="store_true", help="measure the trained tokenizer as a tokenizer.json")
    ap.add_argument("--vocab-size", type=int, default=8192, help="vocab of the tokenizer trained when no --tokenizer is given")
    ap.add_argument("--workdir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir()),
                    help="where the text copies and shards go (a temporary folder inside); default tmpfs, so that the "
                         "disk, whose metadata speed varies a lot (cloud disks throttle after a burst), stays out of a CPU comparison")
    ap.add_argument("--repeat", type=int, default=3, help="time each run this many times, interleaved; the best counts")
    args = ap.parse_args()
    from data_prep.tokenizer import check_tokenizer
    from data_prep.tokenizer_training import train_tokenizer

    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        data = tmp / "text"
        data.mkdir()
        for f in sorted(args.input.glob("*_*.txt")):
            (data / f.name).write_text(f.read_text(encoding="utf-8") * args.copies, encoding="utf-8")
        tok = check_tokenizer(args.tokenizer) if args.tokenizer else train_tokenizer(args.input, tmp / "tok.model", args.vocab_size, sample_chars=8_000_000)
        if args.json and not args.tokenizer:
            tok = check_tokenizer(as_tokenizer_json(Path(tok.path), tmp / "json"))
        is_json = tok.path.endswith(".json")
        timings: dict = {name: [] for name in ("raw", *(["encode_batch"] if is_json else []), 1, 2)}
        tokens = {}
        for round_ in range(args.repeat):                 # interleaved, so drift on a shared machine hits all three
            for name in timings:
                if name == "raw":
                    seconds, tokens[name] = in_fresh_process(raw_encode, str(data), tok.path)
                elif name == "encode_batch":
                    seconds, tokens[name] = in_fresh_process(raw_encode, str(data), tok.path, "encode_batch")
                else:
                    # A new folder each time: writing where a tree was just deleted is slower on some disks (online
                    # discard), and a real run writes to a fresh folder.
                    out = str(tmp / f"out-{round_}-{name}")
                    seconds, tokens[name] = in_fresh_process(shards, str(data), tok.path, out, args.row_length, name)
                timings[name].append(seconds)
        mb = sum(f.stat().st_size for f in data.glob("*.txt")) / 1e6
    best = {name: min(times) for name, times in timings.items()}
    n = tokens["raw"]
    print(f"{len(list(args.input.glob('*_*.txt')))} languages, {mb:.1f} MB of text, {n:,} tokens "
          f"(data_prep kept {tokens[1]:,}), row length {args.row_length}, vocab {tok.vocab_size:,}, {Path(tok.path).name}")
    print(f"best of {args.repeat} interleaved runs, each in a fresh process")
    print(f"{'run':38s} {'seconds':>8s} {'tokens/s':>10s}   all runs (s)")
    rows = [("tokenizer's own encode (limit)", "raw"), ("data_prep.shards, 1 worker", 1), ("data_prep.shards, 2 workers", 2)]
    if "encode_batch" in timings:
        rows.insert(1, ("tokenizers encode_batch (offsets too)", "encode_batch"))
    for name, key in rows:
        print(f"{name:38s} {best[key]:8.2f} {n / best[key]:10,.0f}   {' '.join(f'{t:.2f}' for t in timings[key])}")
    med = {name: statistics.median(times) for name, times in timings.items()}
    print(f"1 worker / raw encode time: {best[1] / best['raw']:.2f}x (target <= 1.25; medians {med[1] / med['raw']:.2f}x)")
    if "encode_batch" in timings:
        print(f"1 worker / encode_batch time: {best[1] / best['encode_batch']:.2f}x (target <= 1.25; medians "
              f"{med[1] / med['encode_batch']:.2f}x)")
    print(f"2 workers / 1 worker throughput: {best[1] / best[2]:.2f}x (target >= 1.7; medians {med[1] / med[2]:.2f}x)")


if __name__ == "__main__":
    main()
