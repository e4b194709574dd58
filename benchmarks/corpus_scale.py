"""data_prep at corpus scale, against baselines measured in the same run (issue #23's targets):

1. throughput of `python -m data_prep.shards --workers N` over a generated corpus (>= 2 GB, >= 200 labels,
   one label >= 40% of the bytes) against the ideal parallel speed-up of a raw SentencePiece encode of the
   same mix of text (N x one process's rate; target >= 0.8);
2. peak memory (PSS of the whole process tree, sampled every 0.1 s) at 0.5 GB and at 2 GB: flat;
3. the time a kill -9 half-way costs: (time before the kill + the rerun) - the uninterrupted time, and
   that the resumed folder's shard files equal the uninterrupted one's byte for byte;
4. the 1834-label `decay_all` mixture from a root of 1834 small folders: seconds to the first batch and
   to the validation loaders (target < 60 s).

    python benchmarks/corpus_scale.py [--gigabytes 2] [--labels 200] [--workers N] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fresh_process import in_fresh_process

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "mmbert_pl" / "sample" / "ntrex"


def pieces_of(path: Path, chars: int = 300) -> list[str]:
    text = " ".join(path.read_text(encoding="utf-8").split())
    return [text[i : i + chars] for i in range(0, len(text), chars)]


def generate(folder: Path, total_bytes: int, labels: int, big_share: float, seed: int = 0) -> dict[str, int]:
    """`labels` .txt files (eng_Latn holding `big_share` of the bytes; the others named qaa..qzz, ISO's local-use
    codes), documents of 1-6 random pieces of one sample language each. Returns bytes per label."""
    folder.mkdir(parents=True)
    sources = sorted(SAMPLE.glob("*_*.txt"))
    pools = {p.stem: pieces_of(p) for p in sources}
    names = ["eng_Latn"] + [f"q{chr(97 + i // 26)}{chr(97 + i % 26)}_{sources[i % len(sources)].stem.split('_')[1]}"
                            for i in range(labels - 1)]
    sizes = {"eng_Latn": int(total_bytes * big_share)}
    sizes.update({n: int(total_bytes * (1 - big_share) / (labels - 1)) for n in names[1:]})
    rng = random.Random(seed)
    for i, name in enumerate(names):
        pool = pools["eng_Latn"] if name == "eng_Latn" else pools[sources[(i - 1) % len(sources)].stem]
        with open(folder / f"{name}.txt", "w", encoding="utf-8") as f:
            written = 0
            while written < sizes[name]:
                block = "".join(" ".join(rng.choices(pool, k=rng.randint(1, 6))) + "\n" for _ in range(50))
                f.write(block)
                written += len(block.encode())
    return {n: (folder / f"{n}.txt").stat().st_size for n in names}


def raw_encode_rate(folder: str, tokenizer: str, share: float) -> float:
    """Bytes/s of one process's plain `sp.encode` (no I/O timed) over the first `share` of every file."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=tokenizer)
    texts = []
    for f in sorted(Path(folder).glob("*.txt")):
        with open(f, "rb") as stream:
            texts.append(stream.read(max(1 << 16, int(f.stat().st_size * share))).decode("utf-8", "ignore").splitlines())
    size = sum(len(line.encode()) + 1 for lines in texts for line in lines)
    start = time.perf_counter()
    for lines in texts:
        sp.encode(lines, num_threads=1, return_type="numpy")
    return size / (time.perf_counter() - start)


def tree_pss(pid: int) -> int:
    """Proportional set size (bytes) of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def shards_cli(corpus: Path, tokenizer: Path, out: Path, workers: int, kill_after: float | None = None) -> tuple[float, int, int]:
    """(seconds, peak PSS bytes, exit code) of `python -m data_prep.shards`; killed with SIGKILL after `kill_after` s."""
    cmd = [sys.executable, "-m", "data_prep.shards", "--input", str(corpus), "--tokenizer", str(tokenizer), "--out", str(out),
           "--row-length", "1024", "--workers", str(workers), "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_pss(proc.pid))
            time.sleep(0.1)

    poller = threading.Thread(target=sample, daemon=True)
    poller.start()
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    err = proc.communicate()[1]
    seconds = time.perf_counter() - start
    poller.join()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"data_prep.shards failed ({proc.returncode}): {err[-2000:]}")
    return seconds, peak[0], proc.returncode


def shard_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and (p.name == "index.json" or ".mds" in p.name):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def mixture_first_batch(root: str) -> tuple[float, float, int]:
    """(seconds to the first training batch, seconds to the validation loaders, labels) of the decay_all mixture."""
    start = time.perf_counter()
    from mmbert_pl.data.datamodule import MixtureDataModule

    dm = MixtureDataModule(root, "decay_all", 0.3, budget_tokens=64 * 1024 * 8, micro_batch=8, max_epochs=1e9)
    batch = next(iter(dm.train_dataloader()))
    first = time.perf_counter() - start
    assert batch["input_ids"].shape[0] == 8
    loaders = dm.val_dataloader()
    return first, time.perf_counter() - start, len(loaders)


def decay_all_root(folder: Path, tokenizer: Path, workers: int) -> Path:
    """A shard root of every decay_all code (as `<code>_Latn`, and `code`), a few documents each."""
    text = folder / "text"
    text.mkdir(parents=True)
    with open(ROOT / "data_prep" / "language_counts.csv", newline="") as f:
        codes = [row["language"] for row in csv.DictReader(f) if float(row["decay-all"]) > 0]
    pool, rng = pieces_of(SAMPLE / "eng_Latn.txt"), random.Random(1)
    for code in codes:
        label = code if code == "code" else f"{code}_Latn"
        (text / f"{label}.txt").write_text("\n".join(" ".join(rng.choices(pool, k=4)) for _ in range(12)) + "\n")
    out = folder / "shards"
    subprocess.run([sys.executable, "-m", "data_prep.shards", "--input", str(text), "--tokenizer", str(tokenizer), "--out",
                    str(out), "--row-length", "1024", "--workers", str(workers), "--val-fraction", "0.1", "--no-progress"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gigabytes", type=float, default=2.0)
    ap.add_argument("--labels", type=int, default=200)
    ap.add_argument("--big-share", type=float, default=0.45, help="share of the bytes in the one big label")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--vocab-size", type=int, default=16384)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from data_prep.tokenizer_training import train_tokenizer

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        big = generate(tmp / "corpus-big", int(args.gigabytes * 1e9), args.labels, args.big_share)
        small = generate(tmp / "corpus-small", int(args.gigabytes * 1e9 / 4), args.labels, args.big_share, seed=1)
        print(f"generated {sum(big.values()) / 1e9:.2f} GB over {len(big)} labels (eng_Latn {big['eng_Latn'] / sum(big.values()):.0%}) "
              f"and {sum(small.values()) / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s")
        start = time.perf_counter()
        tok = Path(train_tokenizer(tmp / "corpus-big", tmp / "tok.model", args.vocab_size, sample_chars=10_000_000).path)
        print(f"tokenizer (vocab {args.vocab_size:,}, 10M sampled characters streamed from {sum(big.values()) / 1e9:.2f} GB): "
              f"{time.perf_counter() - start:.0f} s")

        rate = in_fresh_process(raw_encode_rate, str(tmp / "corpus-big"), str(tok), 0.05)
        full_s, full_peak, _ = shards_cli(tmp / "corpus-big", tok, tmp / "out-full", args.workers)
        small_s, small_peak, _ = shards_cli(tmp / "corpus-small", tok, tmp / "out-small", args.workers)
        achieved = sum(big.values()) / full_s
        print(f"\nraw SentencePiece encode, one process: {rate / 1e6:.1f} MB/s; ideal with {args.workers} workers "
              f"{args.workers * rate / 1e6:.1f} MB/s")
        print(f"data_prep.shards --workers {args.workers} on {sum(big.values()) / 1e9:.2f} GB: {full_s:.1f} s, {achieved / 1e6:.1f} MB/s = "
              f"{achieved / (args.workers * rate):.2f}x the ideal parallel speed-up (target >= 0.8)")
        print(f"peak PSS: {small_peak / 2**20:,.0f} MiB at {sum(small.values()) / 1e9:.2f} GB, {full_peak / 2**20:,.0f} MiB at "
              f"{sum(big.values()) / 1e9:.2f} GB: ratio {full_peak / small_peak:.2f} for {sum(big.values()) / sum(small.values()):.1f}x the "
              f"input (flat: ~1)  [{small_s:.1f} s for the small corpus]")

        before, _, code = shards_cli(tmp / "corpus-big", tok, tmp / "out-killed", args.workers, kill_after=full_s / 2)
        assert code == -signal.SIGKILL, "the run ended before the kill"
        rerun, _, _ = shards_cli(tmp / "corpus-big", tok, tmp / "out-killed", args.workers)
        lost = before + rerun - full_s
        same = shard_digest(tmp / "out-killed") == shard_digest(tmp / "out-full")
        print(f"kill -9 at {before:.1f} s + rerun {rerun:.1f} s = {before + rerun:.1f} s vs {full_s:.1f} s uninterrupted: "
              f"{lost:.1f} s lost ({lost / full_s:.1%} of the run); shard files byte-identical: {same}")

        start = time.perf_counter()
        root = decay_all_root(tmp / "decay_all", tok, args.workers)
        built = time.perf_counter() - start
        first, val, labels = in_fresh_process(mixture_first_batch, str(root))
        print(f"\ndecay_all root: {labels} labels built in {built:.0f} s; mixture to its first batch {first:.1f} s "
              f"(target < 60 s), and its {labels} validation loaders by {val:.1f} s")


if __name__ == "__main__":
    main()
