"""Owner of the LR: sets every param group's LR at each optimizer step from `mmbert_pl.core.schedules.lr_factor`
(trapezoid: warmup, stable, decay to alpha_f; shapes in that module)."""
from __future__ import annotations

import lightning as L

from mmbert_pl.core.schedules import lr_factor
from mmbert_pl.training.step_values import report

from .clock import tokens_at_step_start


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
