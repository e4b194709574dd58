"""A narrower model initialised from a wider one by strided sampling (recipe §9: mmBERT small from base).

Hidden 768 -> 384 keeps every other hidden unit; heads 12 -> 6 keep every other head with its query,
key and value rows and its output-projection columns; layers, MLP width, vocabulary and head size
stay. Any pair of shapes with that relation works (hidden and heads divided by the same stride).

    python -m mmbert_pl.shrink --model runs/base/checkpoints/last.ckpt --to small --out small-init/
    python -m mmbert_pl.run model=small init_from=small-init/model.ckpt init_weights_only=true ...
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mmbert_pl.core.bad_input import exit_on_bad_input
from mmbert_pl.model import EncoderConfig, MMBertForMaskedLM, named_config
from mmbert_pl.model.config import CONFIGS
from mmbert_pl.files.model_files import check_output, find_tokenizer, read_state, write_model


def check_shrinkable(src: EncoderConfig, dst: EncoderConfig) -> int:
    """The stride, or a ValueError naming what does not fit."""
    for field in ("num_layers", "intermediate_size", "vocab_size", "head_dim"):
        if getattr(src, field) != getattr(dst, field):
            raise ValueError(f"shrinking keeps {field}: the source has {getattr(src, field)}, the target {getattr(dst, field)}")
    stride = src.hidden_size // dst.hidden_size
    if stride < 1 or src.hidden_size != stride * dst.hidden_size or src.num_heads != stride * dst.num_heads:
        raise ValueError(f"hidden {src.hidden_size} -> {dst.hidden_size} and heads {src.num_heads} -> {dst.num_heads} "
                         "must shrink by the same whole stride")
    return stride


def shrink_state(state: dict[str, torch.Tensor], src: EncoderConfig, dst: EncoderConfig) -> dict[str, torch.Tensor]:
    """The target's state_dict, every tensor sliced from the source's (see the table in recipe §9)."""
    stride = check_shrinkable(src, dst)
    hid = torch.arange(0, src.hidden_size, stride)                                   # kept hidden units
    heads = torch.arange(0, src.num_heads, stride)                                   # kept heads
    head_dims = (heads[:, None] * src.head_dim + torch.arange(src.head_dim)).flatten()   # their rows in one of Q/K/V
    qkv_rows = torch.cat([part * src.hidden_size + head_dims for part in range(3)])
    out = {}
    for name, t in state.items():
        if name == "decoder.bias":
            out[name] = t.clone()
        elif name.endswith("tok_embeddings.weight") or name == "decoder.weight":
            out[name] = t[:, hid].clone()
        elif t.dim() == 1:                                                           # LayerNorm weights
            out[name] = t[hid].clone()
        elif name.endswith("attn.Wqkv.weight"):
            out[name] = t[qkv_rows][:, hid].clone()
        elif name.endswith("attn.Wo.weight"):
            out[name] = t[hid][:, head_dims].clone()
        elif name.endswith("mlp.Wi.weight"):
            out[name] = t[:, hid].clone()
        elif name.endswith("mlp.Wo.weight"):
            out[name] = t[hid].clone()
        elif name == "head.dense.weight":
            out[name] = t[hid][:, hid].clone()
        else:
            raise ValueError(f"shrink does not know how to slice {name} {tuple(t.shape)}")
    return out


def shrink(model: MMBertForMaskedLM, target: EncoderConfig) -> MMBertForMaskedLM:
    small = MMBertForMaskedLM(target, attn_backend="sdpa")
    small.load_state_dict(shrink_state(model.state_dict(), model.cfg, target))
    return small


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mmbert_pl.shrink", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the wide model: our .ckpt or a Hugging Face directory")
    ap.add_argument("--to", default="small", choices=sorted(CONFIGS), help="the target shape")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="target config overrides, e.g. hidden_size=32 (the vocabulary and RoPE follow the source)")
    ap.add_argument("--out", required=True, help="output folder: model.ckpt and hf/")
    ap.add_argument("--overwrite", action="store_true", help="replace what --out already holds")
    ap.add_argument("--tokenizer", default=None, help="SentencePiece model for the HF export (default: found beside the input)")
    args = ap.parse_args(argv)
    with exit_on_bad_input():
        shrink_files(args)


def shrink_files(args: argparse.Namespace) -> None:
    """The CLI's work: read, slice, write."""
    check_output(args.out, args.overwrite)
    src, state, _ = read_state(args.model)
    if src is None:
        raise ValueError(f"{args.model} holds no encoder config")
    overrides = {"vocab_size": src.vocab_size, "global_rope_theta": src.global_rope_theta,
                 "local_rope_theta": src.local_rope_theta, "max_position": src.max_position}
    for item in args.set:
        field, _, value = item.partition("=")
        if field not in EncoderConfig.__dataclass_fields__:
            raise ValueError(f"--set {item}: unknown config field {field!r}")
        overrides[field] = type(getattr(src, field))(value)
    target = named_config(args.to, **overrides)
    model = MMBertForMaskedLM(target, attn_backend="sdpa")
    model.load_state_dict(shrink_state(state, src, target))
    ckpt, hf = write_model(model, args.out, args.tokenizer or find_tokenizer([args.model]),
                           {"method": "shrink", "source": str(Path(args.model)), "target": target.to_dict()})
    print(f"{src.hidden_size}x{src.num_heads} heads -> {target.hidden_size}x{target.num_heads} heads "
          f"({model.num_parameters():,} parameters): {ckpt} and {hf}")


if __name__ == "__main__":
    from data_prep.quick_exit import freeze_at_exit

    freeze_at_exit()
    main()
