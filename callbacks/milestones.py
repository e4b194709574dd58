"""Piecewise-constant schedules (language set, temperature): a value that changes at token milestones.

The data can only change at a milestone by building a new StreamingDataset, so milestones cut a run
into segments; `segment_bounds` puts them on optimizer-step boundaries."""
from __future__ import annotations

import math
from typing import Any


def value_at(tokens: float, initial: Any, milestones: list[tuple[float, Any]]) -> Any:
    """The value of the last milestone at or before `tokens` (milestones sorted), else `initial`."""
    value = initial
    for at, v in milestones:
        if tokens >= at:
            value = v
    return value


def segment_bounds(budget: float, step_tokens: int, *milestone_lists: list[tuple[float, Any]]) -> list[tuple[int, int]]:
    """[start, end) token ranges between milestones, each start rounded up to a whole optimizer step."""
    cuts = {0}
    for milestones in milestone_lists:
        for at, _ in milestones:
            if not 0 <= at <= budget:
                raise ValueError(f"milestone at {at:,.0f} tokens lies outside the budget of {budget:,.0f}")
            cut = math.ceil(at / step_tokens) * step_tokens
            if 0 < cut < budget:
                cuts.add(cut)
    ends = sorted(cuts)[1:] + [math.ceil(budget / step_tokens) * step_tokens]
    return list(zip(sorted(cuts), ends))
