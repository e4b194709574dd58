"""Owner of the validation cadence: every N optimizer steps and after the last one, always between two steps.

Lightning counts `val_check_interval` in loader batches, which are micro-batches here (the module accumulates
itself, so the batch warmup can change the accumulation between steps): with 576 micro-batches per step,
`val_check_interval=2000` would validate every 3.5 steps, in the middle of an accumulation. Lightning has no
hook for this decision, so this callback wraps the training loop's own predicate (`_should_check_val_fx`):
Lightning's reasons to validate (a stop requested, the restart bookkeeping) still count, but only between
optimizer steps, and the interval counts `trainer.global_step`.
"""
from __future__ import annotations

import lightning as L


class ValidationCadence(L.Callback):
    def __init__(self, every_steps: int) -> None:
        if every_steps <= 0:
            raise ValueError(f"validation every {every_steps} optimizer steps: must be > 0")
        self.every_steps = every_steps

    def due(self, trainer: L.Trainer, pl_module: L.LightningModule, lightning_says: bool) -> bool:
        if pl_module.micro_index:            # inside an optimizer step's accumulation
            return False
        step = trainer.global_step
        return lightning_says or step % self.every_steps == 0 or step >= trainer.max_steps

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loop = trainer.fit_loop.epoch_loop
        lightning_predicate = loop._should_check_val_fx
        loop._should_check_val_fx = lambda data_fetcher: self.due(trainer, pl_module, lightning_predicate(data_fetcher))
