"""How a run's token budget maps onto rows, micro-batches and optimizer steps."""
from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig


@dataclass(frozen=True)
class BatchGeometry:
    row_length: int
    micro_batch: int          # rows per device per forward pass
    accumulate: int           # micro-batches per optimizer step once the batch warmup is over
    devices: int              # all processes: devices per node x nodes
    budget: float             # tokens, padding included
    max_steps: int
    warmup_tokens: float = 0.0
    warmup_min_accumulate: int = 1

    @property
    def tokens_per_round(self) -> int:
        """Tokens of one micro-batch on every device."""
        return self.micro_batch * self.devices * self.row_length

    @property
    def rows_per_step(self) -> int:
        return self.micro_batch * self.accumulate * self.devices

    @property
    def tokens_per_step(self) -> int:
        return self.rows_per_step * self.row_length

    def steps_for_tokens(self, tokens: float) -> int:
        """Whole optimizer steps of the full batch that hold `tokens` (at least one): a cadence in tokens."""
        return max(1, round(tokens / self.tokens_per_step))


def steps_for(budget: float, tokens_per_round: int, accumulate: int, warmup_tokens: float, k_min: int) -> int:
    """Optimizer steps until the budget is reached, counting the smaller steps of the batch warmup."""
    from mmbert_pl.core.schedules import accumulation_at

    tokens, steps = 0, 0
    while tokens < warmup_tokens and tokens < budget:
        tokens += accumulation_at(tokens, k_min, accumulate, warmup_tokens) * tokens_per_round
        steps += 1
    return steps + max(0, math.ceil((budget - tokens) / (accumulate * tokens_per_round)))


def batch_geometry(cfg: DictConfig, row_length: int) -> BatchGeometry:
    """`data.global_batch_rows` fixes accumulation; `trainer.max_tokens` x `budget_scale` fixes the budget;
    the batch warmup (a share of the budget) makes the first steps smaller."""
    devices, micro = cfg.trainer.devices * cfg.trainer.num_nodes, cfg.data.micro_batch
    rows = cfg.data.global_batch_rows
    accumulate = rows // (micro * devices) if rows else (cfg.trainer.accumulate_grad_batches or 1)
    per_round = micro * devices * row_length
    warmup = cfg.callbacks.batch_warmup
    if cfg.trainer.max_tokens is not None:
        budget = cfg.trainer.max_tokens * cfg.budget_scale
    else:
        budget = cfg.trainer.max_steps * accumulate * per_round
    warmup_tokens = warmup.share * budget
    max_steps = max(1, steps_for(budget, per_round, accumulate, warmup_tokens, warmup.min_accumulate))
    return BatchGeometry(row_length, micro, accumulate, devices, float(budget), max_steps, warmup_tokens, warmup.min_accumulate)
