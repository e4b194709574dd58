"""The encoder a run trains: a named shape (`model=tiny|small|base`) sized to the shards' tokenizer, or, when
`init_from=` is a Hugging Face folder and no `model=` was given, the folder's own config.json (a released mmBERT
or ModernBERT continues with its own hidden size, layers, heads, window, RoPE θ and vocabulary)."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from mmbert_pl.files.checkpointing import is_sharded_checkpoint
from mmbert_pl.files.hf import encoder_config_from_hf
from mmbert_pl.model import EncoderConfig, named_config


def hf_folder(init_from: str | None) -> Path | None:
    """`init_from` if it names a Hugging Face model folder (config.json inside), else None."""
    if not init_from:
        return None
    path = Path(init_from)
    return path if path.is_dir() and not is_sharded_checkpoint(path) and (path / "config.json").is_file() else None


def model_named_on_command_line() -> bool:
    """Whether `model=` was given (not the default): only then does a named shape override an HF folder's own."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return True
    return any(o.lstrip("+~").split("=", 1)[0] in ("model", "model.name") for o in HydraConfig.get().overrides.task)


def run_model(cfg: DictConfig, tokenizer: dict) -> EncoderConfig:
    folder = hf_folder(cfg.init_from)
    if folder is None or model_named_on_command_line():
        return named_config(cfg.model.name, vocab_size=tokenizer["vocab_size"], pad_id=tokenizer["pad"],
                            global_rope_theta=cfg.model.global_rope_theta, local_rope_theta=cfg.model.local_rope_theta)
    try:
        found = encoder_config_from_hf(json.loads((folder / "config.json").read_text()))
    except (json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"init_from={folder}: its config.json is not a readable ModernBERT config ({type(e).__name__}: {e}); "
                         f"restore it from the model's release") from None
    if found.vocab_size < tokenizer["vocab_size"]:
        raise ValueError(f"init_from={folder} has a vocabulary of {found.vocab_size}, smaller than the shards' tokenizer's "
                         f"{tokenizer['vocab_size']}: build the shards with the model's own tokenizer "
                         f"(data_prep.shards --tokenizer {folder})")
    return found.with_(pad_id=tokenizer["pad"])
