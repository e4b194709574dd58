"""The decoder loss alone: chunked (`mmbert_pl.model.mlm_loss`), eager and compiled (`model.compile=true`),
vs plain `F.cross_entropy` on fp32 logits.

Forward + backward of `hidden (labels, H) -> decoder (vocab, H) -> mean cross-entropy`, the last
step of every training step. Each variant runs in a fresh process, so peak memory (`peak_memory.py`)
is its own. Prints time and peak memory of each and their ratios to plain, in one run.

    python benchmarks/mlm_loss.py                                  # CPU, fp32: 1,536 labels x vocab 256k
    python benchmarks/mlm_loss.py --device cuda --dtype bfloat16 --labels 9830   # `base` at 32k tokens, 30%
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from mmbert_pl.model.mlm_loss import chunked_cross_entropy

from fresh_process import in_fresh_process
from peak_memory import PeakMemory


def plain(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, target: torch.Tensor, _chunk: int):
    return F.cross_entropy(F.linear(hidden, weight, bias).float(), target)


def chunked(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, target: torch.Tensor, chunk: int):
    return chunked_cross_entropy(hidden, weight, bias, target, chunk, predict=False)[0]


def compiled(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, target: torch.Tensor, chunk: int):
    return chunked_cross_entropy(hidden, weight, bias, target, chunk, predict=False, compiled=True)[0]


VARIANTS = {"plain": plain, "chunked": chunked, "compiled": compiled}


def measure(variant: str, args: argparse.Namespace) -> dict:
    """One variant in this (fresh) process: seconds per forward+backward, peak bytes above the inputs."""
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(args.labels, args.hidden, device=device, generator=gen).requires_grad_()
    weight = (torch.randn(args.vocab, args.hidden, device=device, generator=gen) * 0.02).requires_grad_()
    bias = torch.zeros(args.vocab, device=device, requires_grad=True)
    target = torch.randint(0, args.vocab, (args.labels,), device=device, generator=gen)
    fn, autocast = VARIANTS[variant], dtype != torch.float32

    def step() -> float:
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            loss = fn(hidden, weight, bias, target, args.chunk_rows)
        loss.backward()
        return float(loss.detach())

    step()                                         # warm-up (and compile); grads now exist, as in training
    step()                                         # the shorter last chunk's shape, compiled too
    times, losses = [], []
    with PeakMemory(device) as peak:
        for _ in range(args.steps):
            start = time.perf_counter()
            losses.append(step())
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return {"variant": variant, "seconds": statistics.median(times), "peak_bytes": peak.bytes, "loss": losses[-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--labels", type=int, default=1536, help="labelled tokens in the step (30%% of 5,120 by default)")
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--vocab", type=int, default=256000)
    p.add_argument("--chunk-rows", type=int, default=2048)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args()
    results = {name: in_fresh_process(measure, name, args) for name in VARIANTS}
    base = results["plain"]
    print(f"{args.labels} labels x hidden {args.hidden} x vocab {args.vocab:,}, {args.device} {args.dtype}, "
          f"chunk_rows {args.chunk_rows}, median of {args.steps}")
    print(f"{'variant':8} {'ms/step':>9} {'peak MiB':>9} {'loss':>9}")
    for r in results.values():
        print(f"{r['variant']:8} {r['seconds'] * 1e3:9.1f} {r['peak_bytes'] / 2**20:9.0f} {r['loss']:9.4f}")
    for r in list(results.values())[1:]:
        print(f"plain / {r['variant']}: time {base['seconds'] / r['seconds']:.2f}x, "
              f"peak memory {base['peak_bytes'] / max(r['peak_bytes'], 1):.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
