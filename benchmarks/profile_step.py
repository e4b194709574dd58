"""Where a training step's time goes: torch.profiler over a few Lightning training steps.

Same workload and module as train_throughput.py (one configuration). Prints the wall time per
step, the device time the kernels account for (the rest is the device waiting on the host), and
the operators with the most device (or, on CPU, host) time.

    python benchmarks/profile_step.py --accelerator gpu --model base --length 1024 --backend flex --compile
"""
from __future__ import annotations

import argparse
import logging
import time

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile

from mmbert_pl.model import named_config
from mmbert_pl.training.module import MLMModule

from train_throughput import MASK_RATIO, Batches, make_workload


class Profiled(L.Callback):
    def __init__(self, start: int, steps: int, activities: list) -> None:
        self.start, self.steps, self.activities = start, steps, activities
        self.prof: profile | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.start:
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            self.prof = profile(activities=self.activities)
            self.prof.__enter__()
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.start + self.steps - 1:
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            self.wall = (time.perf_counter() - self.t0) / self.steps
            self.prof.__exit__(None, None, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--backend", default="sdpa")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--rows", type=int, default=25, help="operators to print")
    args = ap.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    gpu = args.accelerator == "gpu"

    cfg = named_config(args.model, attn_out_dropout=0.0)
    work = make_workload(args.length, args.tokens, cfg.vocab_size, batches=4, seed=args.length)
    module = MLMModule(cfg, random_pool=list(range(100, cfg.vocab_size)), mask_ratio=MASK_RATIO,
                       attn_backend=args.backend, compile=args.compile)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    cb = Profiled(args.warmup, args.steps, activities)
    trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision="bf16-mixed" if gpu else "32-true",
                        max_steps=args.warmup + args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[cb])
    trainer.fit(module, torch.utils.data.DataLoader(Batches(work.ours, args.warmup + args.steps), batch_size=None))

    sort = "self_cuda_time_total" if gpu else "self_cpu_time_total"
    events = cb.prof.key_averages()
    print(events.table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))
    if gpu:
        # Device-side annotations (optimizer steps, inductor's kernel names) span kernels: count kernels only.
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA and not e.is_user_annotation]
        kernel_ms = sum(e.self_device_time_total for e in kernels) / 1e3 / args.steps
        print(f"wall per step {cb.wall * 1e3:.1f} ms; device kernels {kernel_ms:.1f} ms "
              f"({kernel_ms / (cb.wall * 1e3):.0%} busy); {args.tokens} token slots per step")
    else:
        print(f"wall per step {cb.wall * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
