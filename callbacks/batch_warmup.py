"""Batch-size warmup (recipe §5): the global batch grows from `k_min` to `k_max` micro-batch rounds over
`warmup_tokens`, spending tokens ∝ size so that every size gets the same number of optimizer steps.

Size b (for b = k_min .. k_max-1) is used while tokens < T_b = W · Σ_{k_min..b} k / Σ_{k_min..k_max-1} k;
k_max from W on. The module's accumulation changes only between optimizer steps.
"""
from __future__ import annotations

import lightning as L

from .clock import tokens_at_step_start
from .reporting import report


def accumulation_at(tokens: float, k_min: int, k_max: int, warmup_tokens: float) -> int:
    if warmup_tokens <= 0 or k_min >= k_max or tokens >= warmup_tokens:
        return k_max
    total = sum(range(k_min, k_max))
    cumulative = 0
    for b in range(k_min, k_max):
        cumulative += b
        if tokens < warmup_tokens * cumulative / total:
            return b
    return k_max


class BatchWarmup(L.Callback):
    def __init__(self, k_min: int, k_max: int, warmup_tokens: float, rows_per_round: int) -> None:
        if not 1 <= k_min <= k_max or warmup_tokens < 0:
            raise ValueError(f"batch warmup: need 1 <= k_min <= k_max and warmup_tokens >= 0, got {k_min}, {k_max}, {warmup_tokens}")
        self.k_min, self.k_max, self.warmup_tokens, self.rows_per_round = k_min, k_max, warmup_tokens, rows_per_round

    def at(self, tokens: float) -> int:
        return accumulation_at(tokens, self.k_min, self.k_max, self.warmup_tokens)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        tokens = tokens_at_step_start(trainer, pl_module, batch_idx)
        if tokens is None:
            return
        pl_module.accumulate = self.at(tokens)
        report(pl_module, {"schedule/global_batch_rows": float(pl_module.accumulate * self.rows_per_round)})
