"""StableAdamW's step alone on a model's real parameters: multi-tensor (`torch._foreach_*`) vs compiled
(`optimizer.compile=true`), in one run.

The step is memory bound: it reads and writes each parameter, its gradient and two moments several
times. "GB/s" counts the 7 passes an update has to make at least (read p, g, m, v; write p, m, v),
so it is comparable with the device's memory bandwidth. Both variants start from the same state and
must end at the same parameters (their largest difference is printed, relative to the largest change).

    python benchmarks/optimizer_step.py --model base --layers 2          # CPU: 2 of base's 22 layers
    python benchmarks/optimizer_step.py --device cuda --model base      # all of base, 307M parameters
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from mmbert_pl.model import MMBertForMaskedLM, named_config
from mmbert_pl.training.optim import StableAdamW, parameter_groups


def measure(model: torch.nn.Module, grads: list[torch.Tensor], compiled: bool, steps: int) -> tuple[float, list[torch.Tensor]]:
    """(median seconds per optimizer step, the parameters after it)."""
    model = copy.deepcopy(model)
    opt = StableAdamW(parameter_groups(model, 8e-5), compiled=compiled)
    for p, g in zip(model.parameters(), grads):
        p.grad = g
    times = []
    for step in range(steps + 2):                   # two warm-up steps (and the compile)
        for group in opt.param_groups:
            group["lr"] = 8e-4 * (1 - step / (steps + 2))     # the LR changes every step, as scheduled
        sync(grads[0].device)
        start = time.perf_counter()
        opt.step()
        sync(grads[0].device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]), [p.detach() for p in model.parameters()]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="base")
    ap.add_argument("--layers", type=int, default=None, help="override the layer count (CPU runs)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    overrides = {"num_layers": args.layers} if args.layers else {}
    model = MMBertForMaskedLM(named_config(args.model, **overrides), attn_backend="sdpa").to(args.device)
    gen = torch.Generator(device=args.device).manual_seed(0)
    grads = [torch.randn(p.shape, device=args.device, generator=gen) * 1e-3 for p in model.parameters()]
    n = sum(p.numel() for p in model.parameters())
    results = {name: measure(model, grads, name == "compiled", args.steps) for name in ("foreach", "compiled")}
    moved = max(float((a - p.detach()).abs().max()) for a, p in zip(results["foreach"][1], model.parameters()))
    diff = max(float((a - b).abs().max()) for a, b in zip(results["foreach"][1], results["compiled"][1])) / moved
    print(f"StableAdamW step, {args.model} ({n / 1e6:.0f}M parameters in {len(grads)} tensors), {args.device} fp32, "
          f"median of {args.steps}")
    print(f"{'variant':9} {'ms/step':>9} {'GB/s':>7}")
    for name, (seconds, _) in results.items():
        print(f"{name:9} {seconds * 1e3:9.1f} {7 * 4 * n / seconds / 1e9:7.0f}")
    print(f"foreach / compiled: time {results['foreach'][0] / results['compiled'][0]:.2f}x; "
          f"largest difference of the parameters {diff:.1e} of the largest change")


if __name__ == "__main__":
    main()
