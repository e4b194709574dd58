"""Model-state memory per GPU under DDP and FSDP (`trainer=gpu_ddp` / `trainer=gpu_fsdp`), computed from the real
parameter tensors (the encoder built on the meta device), for `small` and `base` on 8 GPUs.

Per parameter, both keep fp32 weights (4 B), fp32 gradients (4 B) and StableAdamW's two fp32 moments (8 B);
DDP holds all of it on every GPU (plus its gradient buckets, about one more copy of the gradients), FSDP holds
1/N of it and, while a group computes, that group's whole weights and gradients: the root group (token
embedding, tied decoder, head) for the whole step, one layer at a time (two while the next is prefetched).
Activations come on top and are the same under both (benchmarks/peak_memory.py measures them).

    python benchmarks/memory_per_gpu.py [--gpus 8]
"""
from __future__ import annotations

import argparse

import torch

from mmbert_pl.model import MMBertForMaskedLM, named_config

GIB = 2**30
STATE_BYTES = 4 + 4 + 8          # fp32 weight, fp32 gradient, two fp32 moments


def sizes(name: str) -> tuple[int, int, int]:
    """(all parameters, the root group's, the largest layer's) of the named model."""
    with torch.device("meta"):
        model = MMBertForMaskedLM(named_config(name), attn_backend="sdpa")
    total = model.num_parameters()
    layers = [sum(p.numel() for p in layer.parameters()) for layer in model.model.layers]
    return total, total - sum(layers), max(layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8)
    n = parser.parse_args().gpus
    print(f"model state per GPU, {n} GPUs (GiB; activations not included)")
    print("| model | parameters | DDP | FSDP sharded | FSDP gathered while computing | FSDP peak | FSDP / DDP |")
    print("|---|---|---|---|---|---|---|")
    for name in ("small", "base"):
        total, root, layer = sizes(name)
        ddp = (total * STATE_BYTES + total * 4) / GIB          # + DDP's gradient buckets
        sharded = total * STATE_BYTES / n / GIB
        gathered = (root + 2 * layer) * (4 + 4) / GIB           # whole weights + gradients of the groups in use
        print(f"| {name} | {total / 1e6:.0f}M | {ddp:.2f} | {sharded:.2f} | {gathered:.2f} | {sharded + gathered:.2f} "
              f"| {(sharded + gathered) / ddp:.2f}x |")


if __name__ == "__main__":
    main()
