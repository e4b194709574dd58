"""Start a stage from the previous stage's weights: not its loops, data position or clock (recipe §12)."""
from __future__ import annotations

from pathlib import Path

import torch

from .hf import import_hf
from .model import MMBertForMaskedLM


def load_optimizer_moments(path: str | Path) -> dict:
    """The optimizer state (moments, step counts) of our checkpoint, for a stage that keeps them."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"init_optimizer=true needs init_from to be one of our .ckpt files; {path} holds no optimizer state")
    states = torch.load(path, map_location="cpu", weights_only=False).get("optimizer_states") or []
    if len(states) != 1:
        raise ValueError(f"{path} holds {len(states)} optimizer states, expected 1")
    return states[0]


def load_initial_weights(model: MMBertForMaskedLM, path: str | Path) -> None:
    """Copy weights from our Lightning checkpoint (.ckpt) or a Hugging Face ModernBERT directory."""
    path = Path(path)
    if path.is_dir():
        state = import_hf(path, attn_backend="sdpa").state_dict()
    elif path.is_file():
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        if "state_dict" not in checkpoint:
            raise ValueError(f"init_from={path} is not a Lightning checkpoint of this project (no state_dict)")
        state = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    else:
        raise ValueError(f"init_from={path} does not exist; give a .ckpt of a previous stage or a Hugging Face directory")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        detail = f"missing {missing[:3]}" if missing else f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, the model has {tuple(own[wrong[0]].shape)}"
        raise ValueError(f"init_from={path} does not fit model {model.cfg.hidden_size}x{model.cfg.num_layers} "
                         f"with vocab {model.cfg.vocab_size}: {detail}")
    model.load_state_dict(state)
