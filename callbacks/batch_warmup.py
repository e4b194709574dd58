"""Owner of the batch-size warmup: sets the module's accumulation between optimizer steps from
`mmbert_pl.core.schedules.accumulation_at`. The schedule is in rounds of `round_rows` rows (fixed for the run);
the accumulation is what this layout needs for them (`rows_per_pass`: micro-batch x processes)."""
from __future__ import annotations

import lightning as L

from mmbert_pl.core.schedules import accumulation_at
from mmbert_pl.training.step_values import report

from .clock import tokens_at_step_start


class BatchWarmup(L.Callback):
    def __init__(self, k_min: int, k_max: int, warmup_tokens: float, round_rows: int, rows_per_pass: int | None = None) -> None:
        if not 1 <= k_min <= k_max or warmup_tokens < 0:
            raise ValueError(f"batch warmup: need 1 <= k_min <= k_max and warmup_tokens >= 0, got {k_min}, {k_max}, {warmup_tokens}")
        self.k_min, self.k_max, self.warmup_tokens, self.round_rows = k_min, k_max, warmup_tokens, round_rows
        self.rows_per_pass = rows_per_pass or round_rows

    def at(self, tokens: float) -> int:
        return accumulation_at(tokens, self.k_min, self.k_max, self.warmup_tokens)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        tokens = tokens_at_step_start(trainer, pl_module, batch_idx)
        if tokens is None:
            return
        rows = self.at(tokens) * self.round_rows
        pl_module.accumulate = rows // self.rows_per_pass
        report(pl_module, {"schedule/global_batch_rows": float(rows)})
