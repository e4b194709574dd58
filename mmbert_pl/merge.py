"""Model merging, the recipe's last step (recipe §8): TIES for base, exponential weighting for small.

    python -m mmbert_pl.merge ties --base EXT.ckpt --models ENG.ckpt CONT.ckpt ALL.ckpt --density 0.2 --out merged/
    python -m mmbert_pl.merge exponential --models step1.ckpt step2.ckpt step3.ckpt --alpha 0.5 --out merged/
    python -m mmbert_pl.merge average --models a.ckpt b/hf --weights 1 2 --out merged/

Inputs are our checkpoints or Hugging Face ModernBERT directories, all of one shape and vocabulary.
Writes `OUT/model.ckpt` (usable as `init_from=`) and `OUT/hf/` (transformers).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mmbert_pl.core.bad_input import exit_on_bad_input
from mmbert_pl.model import MMBertForMaskedLM
from mmbert_pl.files.model_files import check_output, find_tokenizer, read_state, write_model

State = dict[str, torch.Tensor]
TIED = {"decoder.weight": "model.embeddings.tok_embeddings.weight"}   # the decoder shares the embedding matrix


def weighted_average(states: list[State], weights: list[float]) -> State:
    """Σ w_i θ_i / Σ w_i, key by key."""
    if len(weights) != len(states) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"need one non-negative weight per model with a positive sum, got {weights} for {len(states)} models")
    total = sum(weights)
    return {k: sum(w * s[k].double() for w, s in zip(weights, states)).div(total).to(states[0][k].dtype) for k in states[0]}


def exponential_weights(count: int, alpha: float, steps: list[int] | None = None, step_unit: float = 1.0) -> list[float]:
    """Weight α^(n−i) for the i-th of n checkpoints (oldest first; the newest weighs 1), or with `steps`
    α^((s_newest − s_i) / step_unit), so unevenly spaced checkpoints weigh by their distance in steps."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if steps is None:
        return [alpha ** (count - 1 - i) for i in range(count)]
    if len(steps) != count or any(s is None for s in steps):
        raise ValueError("weighting by steps needs a global step for every checkpoint (Hugging Face directories have none)")
    return [alpha ** ((max(steps) - s) / step_unit) for s in steps]


def _keep_top(x: torch.Tensor, density: float) -> torch.Tensor:
    """Mask of the int(density·numel) entries of largest |x| (ties at the threshold kept)."""
    k = int(density * x.numel())
    if k <= 0:
        return torch.zeros_like(x, dtype=torch.bool)
    if k >= x.numel():
        return torch.ones_like(x, dtype=torch.bool)
    threshold = x.abs().flatten().kthvalue(x.numel() - k + 1).values
    return x.abs() >= threshold


def ties(base: State, states: list[State], density: float, lam: float = 1.0, trim: str = "global",
         weights: list[float] | None = None) -> State:
    """TIES-merging (Yadav et al. 2023) of task vectors τ_t = θ_t − θ_base:
    trim each τ_t to its top `density` share by magnitude (over the whole model as in the paper, or
    per tensor as MergeKit), elect the sign of Σ w_t τ̂_t per entry (+ where it is 0), average the
    entries that agree with it (weighted by w_t), and add λ times that to the base."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    if trim not in ("global", "tensor"):
        raise ValueError(f"trim must be 'global' or 'tensor', got {trim!r}")
    weights = weights or [1.0] * len(states)
    if len(weights) != len(states):
        raise ValueError(f"{len(weights)} weights for {len(states)} models")
    keys = [k for k in base if k not in TIED]
    deltas = [{k: s[k].float() - base[k].float() for k in keys} for s in states]
    for d in deltas:
        if trim == "global":
            mask = _keep_top(torch.cat([d[k].flatten() for k in keys]), density)
            for k, m in zip(keys, mask.split([d[k].numel() for k in keys])):
                d[k] *= m.view_as(d[k])
        else:
            for k in keys:
                d[k] *= _keep_top(d[k], density)
    merged: State = {}
    for k in keys:
        stacked = torch.stack([w * d[k] for w, d in zip(weights, deltas)])
        sign = torch.where(stacked.sum(0) >= 0, 1.0, -1.0)
        agree = (torch.sign(stacked) == sign) & (stacked != 0)
        w = torch.tensor(weights).view(-1, *[1] * (stacked.dim() - 1))
        mixed = (stacked * agree).sum(0) / (w * agree).sum(0).clamp_min(1e-12)
        merged[k] = (base[k].float() + lam * mixed).to(base[k].dtype)
    for tied, source in TIED.items():
        if tied in base:
            merged[tied] = merged[source]
    return merged


def _check_same_shape(configs: list, states: list[State], paths: list[str]) -> None:
    first = configs[0]
    for cfg, state, path in zip(configs[1:], states[1:], paths[1:]):
        if first is not None and cfg is not None and cfg != first:
            field = next(f for f, v in first.to_dict().items() if cfg.to_dict()[f] != v)
            raise ValueError(f"cannot merge models of different configs: {paths[0]} has {field}={getattr(first, field)}, "
                             f"{path} has {field}={getattr(cfg, field)}")
        for k, v in states[0].items():
            if k not in state or state[k].shape != v.shape:
                got = tuple(state[k].shape) if k in state else "nothing"
                raise ValueError(f"cannot merge: {k} is {tuple(v.shape)} in {paths[0]} but {got} in {path} "
                                 "(different shape or vocabulary)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mmbert_pl.merge", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="method", required=True)
    for name, text in (("ties", "TIES-merging of models against a base"),
                       ("exponential", "exponentially weighted average of a series of checkpoints, oldest first"),
                       ("average", "plain or weighted average")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--models", nargs="+", required=True, help="our .ckpt files or Hugging Face directories")
        p.add_argument("--out", required=True, help="output folder: model.ckpt and hf/")
        p.add_argument("--overwrite", action="store_true", help="replace what --out already holds")
        p.add_argument("--tokenizer", default=None, help="SentencePiece model for the HF export (default: found beside the inputs)")
        if name in ("ties", "average"):
            p.add_argument("--weights", nargs="+", type=float, default=None, help="one per model (default: equal)")
        if name == "ties":
            p.add_argument("--base", required=True, help="the model the task vectors start from (e.g. the end of context extension)")
            p.add_argument("--density", type=float, default=0.2, help="share of each task vector kept (the TIES paper's k=20%%)")
            p.add_argument("--lam", type=float, default=1.0, help="scale λ of the merged task vector")
            p.add_argument("--trim", choices=("global", "tensor"), default="global",
                           help="top-k over the whole model (TIES paper) or per tensor (MergeKit)")
        if name == "exponential":
            p.add_argument("--alpha", type=float, default=0.5, help="weight ratio between consecutive checkpoints")
            p.add_argument("--by-step", action="store_true", help="weigh by distance in global steps, not position")
            p.add_argument("--step-unit", type=float, default=1000.0, help="steps per factor α with --by-step")
    args = ap.parse_args(argv)
    with exit_on_bad_input():
        merge(args)


def merge(args: argparse.Namespace) -> None:
    """The CLI's work: read the inputs, check they fit together, merge, write."""
    check_output(args.out, args.overwrite)
    paths = list(args.models) + ([args.base] if args.method == "ties" else [])
    for p in paths:
        if not Path(p).exists():
            raise ValueError(f"{p} does not exist")
    configs, states, steps = map(list, zip(*(read_state(p) for p in paths)))
    _check_same_shape(configs, states, paths)
    if args.method == "ties":
        weights = args.weights
        merged = ties(states[-1], states[:-1], args.density, args.lam, args.trim, weights)
        meta = {"density": args.density, "lam": args.lam, "trim": args.trim, "base": args.base}
    elif args.method == "exponential":
        weights = exponential_weights(len(states), args.alpha, steps if args.by_step else None, args.step_unit)
        merged = weighted_average(states, weights)
        meta = {"alpha": args.alpha, "by_step": args.by_step}
    else:
        weights = args.weights or [1.0] * len(states)
        merged = weighted_average(states, weights)
        meta = {}
    cfg = next((c for c in configs if c is not None), None)
    if cfg is None:
        raise ValueError("none of the inputs holds an encoder config; give at least one HF directory or recent checkpoint")
    model = MMBertForMaskedLM(cfg, attn_backend="sdpa")
    model.load_state_dict(merged)
    meta.update(method=args.method, models=list(args.models), weights=weights)
    ckpt, hf = write_model(model, args.out, args.tokenizer or find_tokenizer(paths), meta)
    print(json.dumps(meta))
    print(f"merged {len(args.models)} models ({args.method}) -> {ckpt} and {hf}")

if __name__ == "__main__":
    from data_prep.quick_exit import freeze_at_exit

    freeze_at_exit()
    main()
