"""Training throughput of the full Lightning training step: ours vs transformers' ModernBertForMaskedLM.

Every configuration trains the same documents through a real `lightning.Trainer`. Documents have
lengths ~ N(L/2, L/4) clipped to 16..L for row length L, so they vary like real text. Ours packs
them into rows of L with data_prep's best-fit packer and runs `MLMModule.training_step` (masking,
unpadded stream, sparse head, StableAdamW). transformers gets the same documents as a padded batch
with labels drawn beforehand (its masking costs nothing here) and `sparse_prediction=True`.

Tokens/s counts real (non-padding) tokens; MFU = model FLOPs/s (`train_flops_per_token`) over
`--peak-tflops`. "growth" is time per token at the longest row length over that at the shortest, printed
beside the growth of the model FLOPs per token (a ratio near the FLOPs' means the longer rows run as efficiently).
The steps after the warmup are timed as one interval (the device synchronised only at its ends),
as a real run goes; `--accumulate` gives the optimizer step its real share.

    python benchmarks/train_throughput.py --models tiny --lengths 512,1024 --tokens 16384 [--hf]
    python benchmarks/train_throughput.py --accelerator gpu --models base --lengths 1024,8192 \\
        --backends sdpa,flex --compile on --hf --peak-tflops 989
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch

from callbacks.token_budget import train_flops_per_token
from data_prep.packing import BestFitPacker
from mmbert_pl.data.rows import collate_rows
from mmbert_pl.files.hf import export_hf
from mmbert_pl.model import named_config
from mmbert_pl.training.module import MLMModule

MASK_RATIO = 0.3


@dataclass
class Workload:
    ours: list[dict]          # packed-row batches
    theirs: list[dict]        # padded batches of the same documents
    real_tokens: list[int]    # non-padding tokens per batch
    doc_lengths: torch.Tensor   # every document of every batch


def make_workload(row_length: int, tokens: int, vocab: int, batches: int, seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    rows = max(tokens // row_length, 1)
    ours, theirs, real, docs_seen = [], [], [], []
    for b in range(batches):
        packer, packed = BestFitPacker(row_length), []
        while len(packed) < rows:
            n = int(np.clip(rng.normal(row_length / 2, row_length / 4), 16, row_length))
            packed.extend(packer.add(rng.integers(100, vocab, n, dtype=np.uint32)))
        packed = packed[:rows]
        pieces = [r.ids[a:b] for r in packed for a, b in zip(r.cu[:-1], r.cu[1:])]
        ours.append(collate_rows([{"input_ids": r.ids, "cu_seqlens": r.cu, "sample_id": b * rows + i} for i, r in enumerate(packed)]))
        longest = max(len(p) for p in pieces)
        ids = torch.zeros(len(pieces), longest, dtype=torch.long)
        mask = torch.zeros(len(pieces), longest, dtype=torch.long)
        for i, p in enumerate(pieces):
            ids[i, : len(p)] = torch.from_numpy(p.astype(np.int64))
            mask[i, : len(p)] = 1
        chosen = (torch.rand(ids.shape, generator=torch.Generator().manual_seed(seed)) < MASK_RATIO) & mask.bool()
        theirs.append({"input_ids": ids, "attention_mask": mask, "labels": torch.where(chosen, ids, -100)})
        real.append(int(mask.sum()))
        docs_seen.extend(len(p) for p in pieces)
    return Workload(ours, theirs, real, torch.tensor(docs_seen))


class Batches(torch.utils.data.Dataset):
    def __init__(self, batches: list[dict], steps: int) -> None:
        self.batches, self.steps = batches, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict:
        return self.batches[i % len(self.batches)]


class HFModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.model(**batch).loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=1e-4, fused=torch.cuda.is_available())


class StepTimer(L.Callback):
    """Wall time of the micro-batches after `warmup`, as one interval. The device is synchronised only at its
    two ends, so the host queues work ahead as in a real run: a sync per step would serialise host and
    device and charge every step with the host's time between steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.seconds_per_batch = float("nan")

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self._sync()
            self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._last = batch_idx

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync()
        self.seconds_per_batch = (time.perf_counter() - self._t) / (self._last + 1 - self.warmup)


def train(module: L.LightningModule, batches: list[dict], args, warmup: int, accumulate: int = 1) -> tuple[float, float]:
    """(seconds per micro-batch after warmup, peak device memory GiB). Every micro-batch of the loader is
    trained on. `accumulate` > 1: our module accumulates itself (set on the module); for transformers'
    module it is Lightning's accumulation."""
    warmup = -(-warmup // accumulate) * accumulate      # the timed interval holds whole optimizer steps
    timer = StepTimer(warmup)
    lightning_accumulate = 1 if isinstance(module, MLMModule) else accumulate
    trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision=args.precision, max_epochs=1,
                        accumulate_grad_batches=lightning_accumulate, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0)
    loader = torch.utils.data.DataLoader(Batches(batches, warmup + args.steps), batch_size=None)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, loader)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return timer.seconds_per_batch, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny", help="comma list of tiny, small, base")
    ap.add_argument("--lengths", default="512,1024", help="comma list of row lengths")
    ap.add_argument("--tokens", type=int, default=16384, help="token slots per step (rows x row length)")
    ap.add_argument("--backends", default="sdpa", help="comma list of attention backends")
    ap.add_argument("--compile", default="off", help="off, on, or off,on")
    ap.add_argument("--hf", action="store_true", help="also train transformers' ModernBertForMaskedLM")
    ap.add_argument("--compile-optimizer", action="store_true", help="ours with optimizer.compile=true (label '+opt')")
    ap.add_argument("--layers", type=int, default=None, help="override the layer count (CPU runs of big shapes)")
    ap.add_argument("--vocab", type=int, default=None, help="override the vocabulary size")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--accumulate", type=int, default=1,
                    help="micro-batches per optimizer step (the recipe's 4608-row batch on 8 GPUs at 32 rows each: 18); "
                         "--steps and --warmup count micro-batches, rounded up to whole optimizer steps")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--precision", default=None, help="default: bf16-mixed on gpu, 32-true on cpu")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak for MFU (H100/H200 bf16 dense: 989)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--deadline", type=float, default=None,
                    help="Unix time: configurations not started by then are skipped (reported SKIPPED), so a run on a "
                         "time-limited machine still writes its JSON and prints its table")
    args = ap.parse_args()
    args.precision = args.precision or ("bf16-mixed" if args.accelerator == "gpu" else "32-true")
    k = args.accumulate
    acc = f" acc {k}" if k > 1 else ""        # the table's label of an accumulating run
    args.steps = -(-args.steps // k) * k
    torch.backends.cuda.matmul.allow_tf32 = True
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    results = []
    for name in args.models.split(","):
        overrides = {"attn_out_dropout": 0.0}
        if args.layers:
            overrides["num_layers"] = args.layers
        if args.vocab:
            overrides["vocab_size"] = args.vocab
        cfg = named_config(name, **overrides)
        for length in map(int, args.lengths.split(",")):
            work = make_workload(length, args.tokens, cfg.vocab_size, batches=4, seed=length)
            real = statistics.mean(work.real_tokens)
            runs = [(b, c) for b in args.backends.split(",") for c in args.compile.split(",")]
            flops = train_flops_per_token(MLMModule(cfg, random_pool=[100]).model, MASK_RATIO, work.doc_lengths)
            for backend, comp in runs:
                impl = f"ours {backend}" + (" compiled" if comp == "on" else "") + (" +opt" if args.compile_optimizer else "") + acc
                if past(args.deadline, name, length, impl):
                    continue
                torch.manual_seed(0)
                try:
                    module = MLMModule(cfg, random_pool=list(range(100, cfg.vocab_size)), mask_ratio=MASK_RATIO,
                                       attn_backend=backend, compile=comp == "on", accumulate=k,
                                       compile_optimizer=args.compile_optimizer)
                    seconds, peak = train(module, work.ours, args, args.warmup + (3 if comp == "on" else 0), accumulate=k)
                except Exception as e:    # one failing backend must not cost the rest of a timed run
                    print(f"FAILED {name} {length} {impl}: {type(e).__name__}: {str(e)[:300]}", flush=True)
                    continue
                finally:
                    module = None
                results.append({"model": name, "length": length, "impl": impl, "tok_s": real / seconds,
                                "flops_tok": flops, "peak_gib": peak})
                print(json.dumps(results[-1]), flush=True)
            if args.hf and not past(args.deadline, name, length, "transformers"):
                from transformers import AutoModelForMaskedLM

                torch.manual_seed(0)
                try:
                    with tempfile.TemporaryDirectory() as d:
                        export_hf(MLMModule(cfg, random_pool=[100], attn_backend="sdpa").model, d)
                        hf = AutoModelForMaskedLM.from_pretrained(d, attn_implementation="sdpa", sparse_prediction=True)
                    seconds, peak = train(HFModule(hf), work.theirs, args, args.warmup, accumulate=k)
                except Exception as e:
                    print(f"FAILED {name} {length} transformers: {type(e).__name__}: {str(e)[:300]}", flush=True)
                else:
                    results.append({"model": name, "length": length, "impl": "transformers sdpa" + acc, "tok_s": real / seconds,
                                    "flops_tok": flops, "peak_gib": peak})
                    print(json.dumps(results[-1]), flush=True)
                hf = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print_table(results, args.peak_tflops)


def past(deadline: float | None, *what) -> bool:
    """True (and says so) once the deadline has passed: the configuration is skipped."""
    if deadline is None or time.time() < deadline:
        return False
    print("SKIPPED (past --deadline):", *what, flush=True)
    return True


def print_table(results: list[dict], peak_tflops: float | None) -> None:
    print(f"\n{'model':6} {'len':>5} {'implementation':26} {'tok/s':>10} {'MFU':>6} {'peak GiB':>8} {'vs transformers':>15}")
    for r in results:
        hf = next((x for x in results if x["model"] == r["model"] and x["length"] == r["length"]
                   and x["impl"].startswith("transformers")), None)
        mfu = f"{r['tok_s'] * r['flops_tok'] / (peak_tflops * 1e12):6.1%}" if peak_tflops else "     -"
        ratio = f"{r['tok_s'] / hf['tok_s']:14.2f}x" if hf else "              -"
        print(f"{r['model']:6} {r['length']:5d} {r['impl']:26} {r['tok_s']:10,.0f} {mfu} {r['peak_gib']:8.1f} {ratio}")
    lengths = sorted({r["length"] for r in results})
    if len(lengths) > 1:
        print(f"\ngrowth: time per token at {lengths[-1]} over time per token at {lengths[0]}; the FLOPs line is "
              "how much the work per token grows (global layers attend over longer documents)")
        for model in sorted({r["model"] for r in results}):
            flops = {r["length"]: r["flops_tok"] for r in results if r["model"] == model}
            if lengths[0] in flops and lengths[-1] in flops:
                print(f"  {model:6} {'model FLOPs per token':26} {flops[lengths[-1]] / flops[lengths[0]]:.2f}")
            for impl in sorted({r["impl"] for r in results if r["model"] == model}):
                by = {r["length"]: r["tok_s"] for r in results if (r["model"], r["impl"]) == (model, impl)}
                if lengths[0] in by and lengths[-1] in by:
                    print(f"  {model:6} {impl:26} {by[lengths[0]] / by[lengths[-1]]:.2f}")


if __name__ == "__main__":
    main()
