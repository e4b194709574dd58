"""How a run's token budget maps onto rows, micro-batches and optimizer steps."""
from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig


@dataclass(frozen=True)
class BatchGeometry:
    row_length: int
    micro_batch: int          # rows per device per forward pass
    accumulate: int           # micro-batches per optimizer step
    devices: int
    budget: float             # tokens, padding included
    max_steps: int

    @property
    def rows_per_step(self) -> int:
        return self.micro_batch * self.accumulate * self.devices

    @property
    def tokens_per_step(self) -> int:
        return self.rows_per_step * self.row_length


def batch_geometry(cfg: DictConfig, row_length: int) -> BatchGeometry:
    """`data.global_batch_rows` fixes accumulation; `trainer.max_tokens` x `budget_scale` fixes the steps."""
    devices, micro = cfg.trainer.devices, cfg.data.micro_batch
    rows = cfg.data.global_batch_rows
    accumulate = rows // (micro * devices) if rows else cfg.trainer.accumulate_grad_batches
    tokens_per_step = micro * accumulate * devices * row_length
    if cfg.trainer.max_tokens is not None:
        budget = cfg.trainer.max_tokens * cfg.budget_scale
        max_steps = max(1, math.ceil(budget / tokens_per_step))
    else:
        max_steps = cfg.trainer.max_steps
        budget = max_steps * tokens_per_step
    return BatchGeometry(row_length, micro, accumulate, devices, float(budget), max_steps)
