"""How a run's token budget maps onto rows, micro-batches and optimizer steps.

What a run is: its global batch in rows, its budget and its batch warmup, which grows the batch in rounds of
`round_rows` rows (the first launch's micro-batch x processes, kept for the run). How it is laid out (processes,
micro-batch, hence accumulation) may change on resume: any layout whose micro-batch x processes divides the
rounds (the global batch, without a warmup) trains the same steps.
"""
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
    round_rows: int           # the batch warmup's unit: the global batch is a whole number of these at every step
    warmup_tokens: float = 0.0
    warmup_min_rounds: int = 1

    @property
    def tokens_per_round(self) -> int:
        return self.round_rows * self.row_length

    @property
    def rows_per_step(self) -> int:
        return self.micro_batch * self.accumulate * self.devices

    @property
    def tokens_per_step(self) -> int:
        return self.rows_per_step * self.row_length

    @property
    def full_rounds(self) -> int:
        return self.rows_per_step // self.round_rows

    @property
    def warmup_active(self) -> bool:
        return self.warmup_tokens > 0 and self.warmup_min_rounds < self.full_rounds

    def steps_for_tokens(self, tokens: float) -> int:
        """Whole optimizer steps of the full batch that hold `tokens` (at least one): a cadence in tokens."""
        return max(1, round(tokens / self.tokens_per_step))


def micro_batches_for(rows: int, processes: int) -> str:
    """What to set so that micro-batch x processes divides `rows`: the largest micro-batches that do, or why none can."""
    fits = [m for m in range(1, rows // processes + 1) if rows % (m * processes) == 0]
    return (f"data.micro_batch={' or '.join(map(str, fits[-4:]))} gives it" if fits else
            f"no micro-batch gives it on {processes} processes: use a number of processes that divides {rows}")


def steps_for(budget: float, tokens_per_round: int, full_rounds: int, warmup_tokens: float, k_min: int) -> int:
    """Optimizer steps until the budget is reached, counting the smaller steps of the batch warmup."""
    from mmbert_pl.core.schedules import accumulation_at

    tokens, steps = 0, 0
    while tokens < warmup_tokens and tokens < budget:
        tokens += accumulation_at(tokens, k_min, full_rounds, warmup_tokens) * tokens_per_round
        steps += 1
    return steps + max(0, math.ceil((budget - tokens) / (full_rounds * tokens_per_round)))


def batch_geometry(cfg: DictConfig, row_length: int, round_rows: int | None = None) -> BatchGeometry:
    """`data.global_batch_rows` fixes accumulation; `trainer.max_tokens` x `budget_scale` fixes the budget;
    the batch warmup (a share of the budget) makes the first steps smaller. `round_rows`: the warmup's unit of a
    resumed run (from its first launch); None on a first launch (this layout's micro-batch x processes)."""
    devices, micro = cfg.trainer.devices * cfg.trainer.num_nodes, cfg.data.micro_batch
    per_pass = micro * devices
    rows = cfg.data.global_batch_rows
    accumulate = rows // per_pass if rows else (cfg.trainer.accumulate_grad_batches or 1)
    warmup = cfg.callbacks.batch_warmup
    unit = round_rows or per_pass
    if cfg.trainer.max_tokens is not None:
        budget = cfg.trainer.max_tokens * cfg.budget_scale
    else:
        budget = cfg.trainer.max_steps * accumulate * per_pass * row_length
    geo = BatchGeometry(row_length, micro, accumulate, devices, float(budget), 1, unit, warmup.share * budget, warmup.min_accumulate)
    if geo.warmup_active and unit % per_pass:
        raise ValueError(f"this run's batch warmup grows the batch in rounds of {unit} rows (its first launch's micro-batch x "
                         f"processes), which data.micro_batch x processes = {micro} x {devices} does not divide; "
                         f"{micro_batches_for(unit, devices)}")
    max_steps = max(1, steps_for(budget, geo.tokens_per_round, geo.full_rounds, geo.warmup_tokens, geo.warmup_min_rounds))
    return BatchGeometry(row_length, micro, accumulate, devices, float(budget), max_steps, unit, geo.warmup_tokens, geo.warmup_min_rounds)
