"""Is the data path ever the bottleneck? DataModule delivery vs the model's consumption, same machine.

Builds (or reuses) the bundled 40-language sample's shards, then:
(1) iterates `MixtureDataModule.train_dataloader()` (every language stream of the `decay_all` set,
    temperature mixture, packed rows, collate) with 0 and `--workers` worker processes, timing
    the batches after the first (the first batch's wait is reported apart);
(2) trains the given model with a real Lightning Trainer on batches from that loader
    (train_throughput.py's timing);
(3) what checking shard hashes costs: the same cold first pass (every shard decompressed on first read, where
    streaming checks its xxh64) over two fresh copies of the shards, one whose manifest asks for no check.
Prints token slots per second of each and the ratio loader / model (the target: >= 10x for `tiny`).

    python benchmarks/loader_throughput.py [--model tiny] [--batches 200] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path


from mmbert_pl.data.datamodule import MixtureDataModule
from mmbert_pl.model import named_config
from mmbert_pl.training.module import MLMModule
from mmbert_pl.sample.prepare import prepare_sample

from train_throughput import MASK_RATIO, train


def loader_rate(root: str, workers: int, batches: int, micro_batch: int, row_length: int) -> tuple[float, float, int]:
    """(token slots/s after the first batch, seconds to the first batch, languages in the mixture)."""
    dm = MixtureDataModule(root, "decay_all", 0.7, budget_tokens=(batches + 1) * micro_batch * row_length,
                           micro_batch=micro_batch, num_workers=workers)
    t0 = time.perf_counter()
    it = iter(dm.train_dataloader())
    next(it)
    first = time.perf_counter() - t0
    t1, slots = time.perf_counter(), 0
    for _, batch in zip(range(batches), it):
        slots += batch["input_ids"].numel()
    return slots / (time.perf_counter() - t1), first, len(dm.segments[0].labels)


def cold_pass_seconds(root: str, checked: bool, batches: int, micro_batch: int, row_length: int) -> float:
    """Seconds for a first pass over a fresh copy of the shards (no decompressed files yet), hashes checked or not."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copytree(root, Path(tmp) / "shards", ignore=shutil.ignore_patterns("*.mds")))
        if not checked:
            manifest = json.loads((copy / "manifest.json").read_text())
            manifest.pop("shard_hash")
            (copy / "manifest.json").write_text(json.dumps(manifest))
        t0 = time.perf_counter()
        loader_rate(str(copy), 0, batches, micro_batch, row_length)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--row-length", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", default=os.environ.get("MMBERT_CACHE", os.path.expanduser("~/.cache/mmbert_pl")))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--accelerator", default="cpu")
    args = ap.parse_args()
    args.precision, args.warmup = ("bf16-mixed" if args.accelerator == "gpu" else "32-true"), 3
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    root = str(prepare_sample(args.cache, 4096, args.row_length, 0.1))
    rows = []
    for workers in sorted({0, args.workers}):
        rate, first, langs = loader_rate(root, workers, args.batches, args.micro_batch, args.row_length)
        rows.append((f"DataModule, {workers} workers ({langs} language streams)", rate, first))

    dm = MixtureDataModule(root, "decay_all", 0.7, budget_tokens=64 * args.micro_batch * args.row_length,
                           micro_batch=args.micro_batch)
    it = iter(dm.train_dataloader())
    batches = [next(it) for _ in range(8)]
    cfg = named_config(args.model, vocab_size=4096, attn_out_dropout=0.0)
    module = MLMModule(cfg, random_pool=list(range(100, 4096)), mask_ratio=MASK_RATIO)
    seconds, _ = train(module, batches, args, args.warmup)
    model_rate = batches[0]["input_ids"].numel() / seconds

    print(f"\n{'':55} {'slots/s':>10} {'first batch s':>13} {'/ model':>8}")
    for name, rate, first in rows:
        print(f"{name:55} {rate:10,.0f} {first:13.2f} {rate / model_rate:7.1f}x")
    print(f"{'model ' + args.model + ' training step (' + args.accelerator + ')':55} {model_rate:10,.0f} {'':13} {1:7.1f}x")

    plain, checked = (min(cold_pass_seconds(root, c, args.batches, args.micro_batch, args.row_length) for _ in range(3))
                      for c in (False, True))
    print(f"\ncold first pass, {args.batches} batches (best of 3): {plain:.2f} s unchecked, {checked:.2f} s with xxh64 "
          f"checked: {checked / plain:.3f}x")


if __name__ == "__main__":
    main()
