"""Temperature schedule: τ at token milestones (mmBERT: 0.7 -> 0.5 -> 0.3). The DataModule realises it."""
from __future__ import annotations

import lightning as L

from mmbert_pl.core.schedules import value_at
from mmbert_pl.training.step_values import report

from .clock import tokens_at_step_start


class TemperatureSchedule(L.Callback):
    def __init__(self, initial: float, milestones: list[tuple[float, float]]) -> None:
        if initial <= 0 or any(t <= 0 for _, t in milestones):
            raise ValueError(f"temperatures must be > 0: {initial}, {milestones}")
        self.initial, self.milestones = initial, sorted(milestones, key=lambda m: m[0])

    def at(self, tokens: float) -> float:
        return value_at(tokens, self.initial, self.milestones)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        tokens = tokens_at_step_start(trainer, pl_module, batch_idx)
        if tokens is not None:
            report(pl_module, {"schedule/temperature": self.at(tokens)}, {"τ": self.at(tokens)})
