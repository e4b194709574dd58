"""Trapezoidal LR as a pure function of tokens (recipe §5): linear warmup, stable, decay to alpha_f.

Decay shapes over x in [0, 1] of the decay window:
- `1-sqrt` (mmBERT; what its paper calls "inverse square root"): α_f + (1-α_f)(1-√x)
- `linear`: α_f + (1-α_f)(1-x)
- `cosine`: α_f + (1-α_f)(1+cos πx)/2
- `inverse_sqrt` (the true one): 1/√(1 + (α_f⁻² - 1)x), which also ends at α_f
"""
from __future__ import annotations

import math

import lightning as L

from .clock import tokens_at_step_start
from .reporting import report

SHAPES = ("1-sqrt", "linear", "cosine", "inverse_sqrt")


def lr_factor(tokens: float, t_warmup: float, t_max: float, t_decay: float, alpha_f: float, shape: str = "1-sqrt") -> float:
    if shape not in SHAPES:
        raise ValueError(f"unknown decay shape {shape!r}; choose one of {SHAPES}")
    if tokens < t_warmup:
        return 1e-10 + (1 - 1e-10) * tokens / t_warmup
    decay_start = t_max - t_decay
    if tokens < decay_start or t_decay <= 0:
        return 1.0
    x = min(1.0, (tokens - decay_start) / t_decay)
    if shape == "1-sqrt":
        return alpha_f + (1 - alpha_f) * (1 - math.sqrt(x))
    if shape == "linear":
        return alpha_f + (1 - alpha_f) * (1 - x)
    if shape == "cosine":
        return alpha_f + (1 - alpha_f) * 0.5 * (1 + math.cos(math.pi * x))
    return 1 / math.sqrt(1 + (alpha_f**-2 - 1) * x)


class LRSchedule(L.Callback):
    """Sets every param group's LR to peak × lr_factor(tokens) at each optimizer step; logs it."""

    def __init__(self, peak: float, t_warmup: float, t_max: float, t_decay: float = 0.0, alpha_f: float = 0.02,
                 shape: str = "1-sqrt") -> None:
        if peak <= 0 or t_warmup < 0 or t_max <= 0 or t_decay < 0 or t_decay > t_max or not 0 <= alpha_f <= 1:
            raise ValueError(f"LR schedule: need peak > 0, 0 <= t_decay <= t_max, 0 <= alpha_f <= 1; got peak={peak}, "
                             f"t_warmup={t_warmup}, t_max={t_max}, t_decay={t_decay}, alpha_f={alpha_f}")
        lr_factor(0, t_warmup, t_max, t_decay, alpha_f, shape)
        self.peak, self.t_warmup, self.t_max, self.t_decay, self.alpha_f, self.shape = peak, t_warmup, t_max, t_decay, alpha_f, shape

    def lr(self, tokens: float) -> float:
        return self.peak * lr_factor(tokens, self.t_warmup, self.t_max, self.t_decay, self.alpha_f, self.shape)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        tokens = tokens_at_step_start(trainer, pl_module, batch_idx)
        if tokens is None:
            return
        lr = self.lr(tokens)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        report(pl_module, {"schedule/lr": lr}, {"lr": lr})
