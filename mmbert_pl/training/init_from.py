"""Start a stage from the end of the previous one, as mmBERT's Composer runs chained them (`load_path` with
`reset_time_once`): the weights and the optimizer state (Adam moments and step counts) carry over; the
token clock, the data position and every schedule start again at 0. `init_weights_only=true` takes the
weights alone, with fresh moments (a merged, shrunk or Hugging Face model has no optimizer state)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mmbert_pl.files.checkpointing import is_sharded_checkpoint
from mmbert_pl.model import EncoderConfig
from mmbert_pl.files.model_files import checkpoint_config, checkpoint_weights, load_checkpoint, read_state

# The fields that give the weights their shapes and the embeddings their meaning; RoPE θ, the window and
# dropout may change between stages (ext raises θ).
SHAPE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads")


@dataclass
class InitialState:
    path: Path
    weights: dict[str, torch.Tensor]
    optimizer: dict | None         # None: weights only
    steps: int | None              # optimizer steps the carried state has taken (None: weights only)

    def describe(self) -> str:
        if self.optimizer is None:
            return f"initialised weights from {self.path} (fresh optimizer moments: init_weights_only=true)"
        return (f"initialised weights and optimizer state (Adam moments after {self.steps} steps) from {self.path}; "
                f"this stage's token clock and schedules start at 0")


def read_initial_state(path: str | Path, model: EncoderConfig, tokenizer_sha256: str, weights_only: bool) -> InitialState:
    """Everything `init_from=` needs, checked against this run's model and tokenizer before any work starts."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"init_from={path} does not exist; give the previous stage's checkpoints/last.ckpt "
                         f"(or a Hugging Face directory with init_weights_only=true)")
    if path.is_dir() and not is_sharded_checkpoint(path):
        if not weights_only:
            raise ValueError(f"init_from={path} is a Hugging Face directory, which holds no optimizer state. Chain stages "
                             f"from the previous stage's checkpoints/last.ckpt (weights and Adam moments, as mmBERT did), "
                             f"or add init_weights_only=true to start from its weights with fresh moments")
        found, weights, _ = read_state(path)
        found_sha, optimizer = folder_tokenizer_sha256(path), None
    else:
        checkpoint = load_checkpoint(path)
        found, weights = checkpoint_config(checkpoint), checkpoint_weights(checkpoint)
        found_sha = (checkpoint.get("hyper_parameters") or {}).get("tokenizer_sha256")
        states = checkpoint.get("optimizer_states") or []
        if weights_only:
            optimizer = None
        elif len(states) == 1:
            optimizer = states[0]
        else:
            raise ValueError(f"init_from={path} holds {len(states)} optimizer states (a merged, shrunk or exported model "
                             f"holds none); add init_weights_only=true to start from its weights with fresh moments")
    check_same_model(path, found, weights, model)
    if found_sha and found_sha != tokenizer_sha256:
        raise ValueError(f"init_from={path} was trained with another tokenizer (sha256 {found_sha[:12]}, these shards' is "
                         f"{tokenizer_sha256[:12]}): its embeddings stand for other pieces. Train on shards built with "
                         f"that tokenizer (data_prep.shards --tokenizer {path if path.is_dir() else 'ITS_TOKENIZER'})")
    steps = max((int(s["step"]) for s in optimizer["state"].values() if "step" in s), default=0) if optimizer else None
    return InitialState(path, weights, optimizer, steps)


def folder_tokenizer_sha256(path: Path) -> str | None:
    """The sha256 of the tokenizer a model folder ships (tokenizer.model, else tokenizer.json), None if it has none."""
    from data_prep.tokenizer import file_sha256, folder_tokenizer

    found = folder_tokenizer(path)
    return file_sha256(found) if found else None


def check_same_model(path: Path, found: EncoderConfig | None, weights: dict[str, torch.Tensor], model: EncoderConfig) -> None:
    """Refuse another shape or vocabulary, naming each field that differs."""
    if found is not None:
        differ = [f"model {f} is {getattr(found, f)} there, {getattr(model, f)} here" for f in SHAPE_FIELDS
                  if getattr(found, f) != getattr(model, f)]
        if differ:
            raise ValueError(f"init_from={path} is another model: {'; '.join(differ)}. Choose the model= it was trained "
                             f"with, and shards of its tokenizer")
    from mmbert_pl.model import MMBertForMaskedLM

    own = MMBertForMaskedLM(model, attn_backend="sdpa").state_dict()
    missing = sorted(set(own) - set(weights))
    wrong = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or wrong:
        detail = f"missing {missing[:3]}" if missing else f"{wrong[0]} is {tuple(weights[wrong[0]].shape)}, the model has {tuple(own[wrong[0]].shape)}"
        raise ValueError(f"init_from={path} does not fit model {model.hidden_size}x{model.num_layers} with vocab {model.vocab_size}: {detail}")
