"""Language-set schedule: named sets (or lists of labels) at token milestones, e.g. pretrain -> ext -> decay_all.
The DataModule realises it (a new mixture per segment); this callback logs what is being served."""
from __future__ import annotations

import lightning as L

from mmbert_pl.core.schedules import value_at
from mmbert_pl.training.step_values import report

from .clock import tokens_at_step_start


class LanguageSetSchedule(L.Callback):
    def __init__(self, initial, milestones: list[tuple[float, object]]) -> None:
        self.initial, self.milestones = initial, sorted(milestones, key=lambda m: m[0])

    def at(self, tokens: float):
        return value_at(tokens, self.initial, self.milestones)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        tokens = tokens_at_step_start(trainer, pl_module, batch_idx)
        if tokens is None:
            return
        segment = trainer.datamodule.segment_for(tokens)
        if segment.languages != self.at(tokens):
            raise RuntimeError(f"at {tokens:,} tokens the data serves {segment.languages!r}, the schedule says {self.at(tokens)!r}")
        report(pl_module, {"schedule/languages": float(len(segment.labels))}, {"languages": len(segment.labels)})
