"""Do the attention backends compute the same function at a real model's shapes?

Fresh random packed documents (12 heads of 64, window 128 as in `base`), each backend in the
given dtype, against a float64 reference computed document by document. Prints the relative
error ||out - ref|| / ||ref|| of the output and of dq/dk/dv; bf16 should land between 1e-3 and
1e-2, float32 far below 1e-3. Exits 1 when an error is over `--bound` or NaN.

    python benchmarks/backend_agreement.py --device cuda --dtype bfloat16 --backends sdpa,flex
"""
from __future__ import annotations

import argparse
import sys

import torch

from mmbert_pl.model.attention import make_backend

HEADS, DIM, WINDOW = 12, 64, 128


def reference(qkv: torch.Tensor, cu: list[int], local: bool) -> torch.Tensor:
    out = []
    for s, e in zip(cu[:-1], cu[1:]):
        q, k, v = qkv[s:e].double().unbind(1)
        scores = torch.einsum("qhd,khd->hqk", q, k) / DIM**0.5
        if local:
            i = torch.arange(e - s, device=qkv.device)
            scores = scores.masked_fill((i[:, None] - i[None, :]).abs() > WINDOW // 2, float("-inf"))
        out.append(torch.einsum("hqk,khd->qhd", scores.softmax(-1), v.double()))
    return torch.cat(out)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b).norm() / b.norm())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--backends", default="sdpa")
    ap.add_argument("--bound", type=float, default=1e-2)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    worst, rows = 0.0, []
    for seed in range(args.seeds):
        gen = torch.Generator().manual_seed(seed)
        lengths = torch.randint(1, 2049, (6,), generator=gen).tolist() + [1, 129]
        cu = [0]
        for n in lengths:
            cu.append(cu[-1] + n)
        qkv64 = torch.randn(cu[-1], 3, HEADS, DIM, generator=gen, dtype=torch.float64).to(args.device)
        grad_out = torch.randn(cu[-1], HEADS, DIM, generator=gen, dtype=torch.float64).to(args.device)
        for local in (False, True):
            ref_in = qkv64.clone().requires_grad_()
            ref = reference(ref_in, cu, local)
            (ref * grad_out).sum().backward()
            for name in args.backends.split(","):
                backend = make_backend(name, WINDOW)
                x = qkv64.to(dtype).requires_grad_()
                cu_t = torch.tensor(cu, dtype=torch.int32, device=args.device)
                out = backend(*(t.contiguous() for t in x.unbind(1)), backend.plan(cu_t, max(lengths), cu[-1]), local=local)
                (out * grad_out.to(dtype)).sum().backward()
                errs = [rel(out.detach(), ref.detach())] + [rel(x.grad[:, i], ref_in.grad[:, i]) for i in range(3)]
                bad = any(e != e for e in errs)
                worst = max(worst, float("inf") if bad else max(errs))
                rows.append((seed, "local" if local else "global", name, *errs))
    print(f"{'seed':>4} {'layer':6} {'backend':7} {'out':>9} {'dq':>9} {'dk':>9} {'dv':>9}   ({args.dtype} vs float64)")
    for seed, kind, name, *errs in rows:
        print(f"{seed:4d} {kind:6} {name:7} " + " ".join(f"{e:9.2e}" for e in errs))
    verdict = "ok" if worst <= args.bound else "FAIL"
    print(f"worst relative error {worst:.2e} (bound {args.bound:.0e}): {verdict}")
    sys.exit(0 if verdict == "ok" else 1)


if __name__ == "__main__":
    main()
