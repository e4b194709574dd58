"""Start a stage from the previous stage's weights: not its loops, data position or clock (recipe §12)."""
from __future__ import annotations

from pathlib import Path

import torch

from .model import MMBertForMaskedLM
from .model_files import read_state


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
    if not Path(path).exists():
        raise ValueError(f"init_from={path} does not exist; give a .ckpt of a previous stage or a Hugging Face directory")
    _, state, _ = read_state(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        detail = f"missing {missing[:3]}" if missing else f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, the model has {tuple(own[wrong[0]].shape)}"
        raise ValueError(f"init_from={path} does not fit model {model.cfg.hidden_size}x{model.cfg.num_layers} "
                         f"with vocab {model.cfg.vocab_size}: {detail}")
    model.load_state_dict(state)
