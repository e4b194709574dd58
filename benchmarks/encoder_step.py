"""Training-step throughput of our encoder vs transformers' ModernBertForMaskedLM on the same documents.

Documents are drawn like ModernBERT's efficiency benchmark (lengths ~ N(256, 64) clipped to 16..512),
30% of tokens carry a label. One step = forward, backward, AdamW step. Ours runs the flat unpadded
stream with a sparse head; transformers runs the padded batch with sdpa, once with its default dense
head and once with `sparse_prediction=True`. Prints non-padding tokens/s and our/their ratios.

    python benchmarks/encoder_step.py [--steps 4] [--docs 32] [--layers 8]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
from transformers import AutoModelForMaskedLM

from mmbert_pl.files.hf import export_hf
from mmbert_pl.model import MMBertForMaskedLM, named_config
from mmbert_pl.model.documents import cu_seqlens_from_lengths


def make_batch(docs: int, vocab: int, label_frac: float, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = (torch.randn(docs, generator=gen) * 64 + 256).round().clamp(16, 512).long()
    width = int(lengths.max())
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    ids = torch.randint(100, vocab, (docs, width), generator=gen) * mask
    labelled = (torch.rand(docs, width, generator=gen) < label_frac) & mask.bool()
    labels = torch.where(labelled, ids, torch.full_like(ids, -100))
    return {"ids": ids, "mask": mask, "labels": labels, "lengths": lengths}


def step_ours(model, opt, b) -> None:
    keep = b["mask"].bool()
    out = model(b["ids"][keep], cu_seqlens_from_lengths(b["lengths"]), int(b["lengths"].max()), labels=b["labels"][keep])
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def step_hf(model, opt, b) -> None:
    out = model(input_ids=b["ids"], attention_mask=b["mask"], labels=b["labels"])
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--docs", type=int, default=32)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--label-frac", type=float, default=0.3)
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = named_config("small", num_layers=args.layers, vocab_size=args.vocab, attn_out_dropout=0.0)
    ours = MMBertForMaskedLM(cfg, attn_backend="sdpa")
    with tempfile.TemporaryDirectory() as d:
        export_hf(ours, d)
        dense = AutoModelForMaskedLM.from_pretrained(d, attn_implementation="sdpa")
        sparse = AutoModelForMaskedLM.from_pretrained(d, attn_implementation="sdpa", sparse_prediction=True)
    runs = {
        "ours (unpadded, sparse head)": (ours, step_ours),
        "transformers (sdpa, dense head)": (dense, step_hf),
        "transformers (sdpa, sparse_prediction)": (sparse, step_hf),
    }
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, (m, _) in runs.items()}
    batches = [make_batch(args.docs, args.vocab, args.label_frac, seed) for seed in range(args.warmup + args.steps)]
    seconds = {name: 0.0 for name in runs}
    for i, b in enumerate(batches):
        for name, (model, step) in runs.items():     # interleaved, so drift hits every run alike
            model.train()
            t = time.perf_counter()
            step(model, opts[name], b)
            if i >= args.warmup:
                seconds[name] += time.perf_counter() - t
    real = sum(int(b["mask"].sum()) for b in batches[args.warmup:])
    padded = sum(b["mask"].numel() for b in batches[args.warmup:])
    print(f"dims: hidden {cfg.hidden_size}, layers {cfg.num_layers}, vocab {cfg.vocab_size}; "
          f"{args.docs} docs/step, {args.steps} timed steps, padding {1 - real / padded:.1%} of the padded batch; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'run':42s} {'tokens/s':>10s}")
    rate = {name: real / s for name, s in seconds.items()}
    for name, r in rate.items():
        print(f"{name:42s} {r:10.0f}")
    ours_rate = rate["ours (unpadded, sparse head)"]
    print(f"ratio ours / transformers default: {ours_rate / rate['transformers (sdpa, dense head)']:.2f}x (target >= 3)")
    print(f"ratio ours / transformers sparse:  {ours_rate / rate['transformers (sdpa, sparse_prediction)']:.2f}x (target >= 1.2)")


if __name__ == "__main__":
    main()
