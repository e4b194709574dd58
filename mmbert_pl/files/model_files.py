"""Reading and writing whole models for the tools (merge, shrink, evaluate, finetune, init_from).

A model is either one of our Lightning checkpoints (`.ckpt`: weights under `model.` and the encoder
config in `hyper_parameters["model"]`) or a Hugging Face ModernBERT directory. A tool's output is a
checkpoint that `init_from=` accepts plus a Hugging Face export beside it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from data_prep.tokenizer import folder_tokenizer

from mmbert_pl.files.checkpointing import is_sharded_checkpoint
from mmbert_pl.files.hf import export_hf, import_hf
from mmbert_pl.model import EncoderConfig, MMBertForMaskedLM



def read_state(path: str | Path) -> tuple[EncoderConfig | None, dict[str, torch.Tensor], int | None]:
    """(config, state_dict, global step) of a checkpoint or an HF directory; config None for an old
    checkpoint without one, step None for an HF directory."""
    path = Path(path)
    if path.is_dir() and not is_sharded_checkpoint(path):
        model = import_hf(path, attn_backend="sdpa")
        return model.cfg, model.state_dict(), None
    checkpoint = load_checkpoint(path)
    return checkpoint_config(checkpoint), checkpoint_weights(checkpoint), checkpoint.get("global_step")


def load_checkpoint(path: Path) -> dict:
    """One of our `.ckpt` files as saved (weights, hyper-parameters, optimizer and loop state)."""
    if is_sharded_checkpoint(path):
        raise ValueError(f"{path} is a sharded checkpoint (trainer.checkpoint_format=sharded); turn it into one file first: "
                         f"python -m mmbert_pl.consolidate {path}")
    if not path.is_file():
        raise ValueError(f"{path} does not exist; give one of our .ckpt files or a Hugging Face ModernBERT directory")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e}); is the file complete?") from e
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning checkpoint of this project (no state_dict)")
    return checkpoint


def checkpoint_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    return {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}


def checkpoint_config(checkpoint: dict) -> EncoderConfig | None:
    hp = (checkpoint.get("hyper_parameters") or {}).get("model")
    return EncoderConfig(**hp) if hp else None


def read_model(path: str | Path, attn_backend: str = "sdpa") -> MMBertForMaskedLM:
    cfg, state, _ = read_state(path)
    if cfg is None:
        raise ValueError(f"{path} holds no encoder config (hyper_parameters['model']); re-save it with this version")
    model = MMBertForMaskedLM(cfg, attn_backend=attn_backend)
    model.load_state_dict(state)
    return model


def find_tokenizer(paths: list[str | Path]) -> Path | None:
    """The tokenizer that came with the first input that has one: an HF folder (ours or a release) holds it,
    a run directory holds it in its `hf/` export; its tokenizer.model first (what our runs trained with)."""
    for p in map(Path, paths):
        for folder in (p, p.parent / "hf", p.parent.parent / "hf"):
            if found := folder_tokenizer(folder):
                return found
    return None


def check_output(out_dir: str | Path, overwrite: bool) -> None:
    """Refuse to write into a folder that already holds something, unless asked to (before any work)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ValueError(f"--out {out} already exists and is not empty; choose another folder, or pass --overwrite "
                         f"to replace its model.ckpt and hf/")


def write_model(model: MMBertForMaskedLM, out_dir: str | Path, tokenizer: str | Path | None, meta: dict) -> tuple[Path, Path]:
    """`out_dir/model.ckpt` (loadable by init_from= and every tool) and `out_dir/hf/` (transformers).

    The checkpoint is written to a temporary name and renamed, so an interrupted tool never leaves a
    truncated file under the final name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "model.ckpt"
    tmp = ckpt.with_suffix(".ckpt.tmp")
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model": model.cfg.to_dict()}, "mmbert_pl": meta}, tmp)
    tmp.replace(ckpt)
    return ckpt, export_hf(model, out / "hf", tokenizer=tokenizer)
