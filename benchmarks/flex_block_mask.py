"""Building the flex_attention masks of one step: `create_block_mask` on the token grid vs ours from block bounds.

Both give identical block masks (tests/model/test_flex_block_mask.py). Documents have lengths ~N(L/2, L/4)
clipped to 16..L, packed in rows of L as in training; a step's global and local masks are built.
Each variant runs in a fresh process so its peak memory (`peak_memory.py`) is its own.

    python benchmarks/flex_block_mask.py --tokens 4096,16384
    python benchmarks/flex_block_mask.py --device cuda --tokens 32768,131072
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.nn.attention.flex_attention import create_block_mask

from mmbert_pl.model.flex_block_mask import document_block_masks, document_mask_mods

from fresh_process import in_fresh_process
from peak_memory import PeakMemory

HALF_WINDOW = 64


def grid(doc: torch.Tensor) -> None:
    total = doc.numel()
    for fn in document_mask_mods(doc, HALF_WINDOW):
        create_block_mask(fn, None, None, total, total, device=str(doc.device))


def bounds(doc: torch.Tensor) -> None:
    document_block_masks(doc, HALF_WINDOW)


VARIANTS = {"token grid": grid, "block bounds": bounds}


def documents(tokens: int, row_length: int, device: str) -> torch.Tensor:
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(tokens // row_length):
        left = row_length
        while left:
            n = min(int(np.clip(rng.normal(row_length / 2, row_length / 4), 16, row_length)), left)
            lengths.append(n)
            left -= n
    return torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)).to(device)


def measure(variant: str, tokens: int, args: argparse.Namespace) -> tuple[float, int]:
    doc = documents(tokens, args.row_length, args.device)
    fn = VARIANTS[variant]
    fn(doc)                                   # warm-up
    times = []
    with PeakMemory(torch.device(args.device)) as peak:
        for _ in range(args.repeat):
            start = time.perf_counter()
            fn(doc)
            if doc.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times), peak.bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tokens", default="4096,16384", help="token slots per step, comma-separated")
    p.add_argument("--row-length", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print(f"global + local block masks of one step, {args.device}, rows of {args.row_length}, median of {args.repeat}")
    print(f"{'tokens':>8} {'variant':13} {'ms':>9} {'peak MiB':>9}")
    for tokens in (int(t) for t in args.tokens.split(",")):
        res = {name: in_fresh_process(measure, name, tokens, args) for name in VARIANTS}
        for name, (sec, peak) in res.items():
            print(f"{tokens:8} {name:13} {sec * 1e3:9.2f} {peak / 2**20:9.1f}")
        (a, pa), (b, pb) = res["token grid"], res["block bounds"]
        print(f"{tokens:8} grid / bounds: time {a / b:.1f}x, peak memory {(pa - pb) / 2**20:.1f} MiB more")


if __name__ == "__main__":
    main()
