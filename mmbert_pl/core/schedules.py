"""The schedule mathematics, all pure functions of the token clock (global tokens before an optimizer step):
the data side, the batch geometry and the callbacks in `callbacks/` read them from here, and a resumed run
gets the same values because it has the same clock.

- Trapezoidal LR (recipe §5): linear warmup, stable, decay to alpha_f. Decay shapes over x in [0, 1] of the
  decay window: `1-sqrt` (mmBERT; what its paper calls "inverse square root"): α_f + (1-α_f)(1-√x);
  `linear`: α_f + (1-α_f)(1-x); `cosine`: α_f + (1-α_f)(1+cos πx)/2; `inverse_sqrt` (the true one):
  1/√(1 + (α_f⁻² - 1)x), which also ends at α_f.
- Mask ratio: constant (mmBERT: per stage), or annealed within a stage through (tokens, ratio) points,
  linearly or as steps.
- Batch-size warmup (recipe §5): the global batch grows from `k_min` to `k_max` micro-batch rounds over
  `warmup_tokens`, spending tokens ∝ size so that every size gets the same number of optimizer steps: size b
  (for b = k_min .. k_max-1) is used while tokens < T_b = W · Σ_{k_min..b} k / Σ_{k_min..k_max-1} k.
- Piecewise-constant values at token milestones (language set, temperature). The data can only change at a
  milestone by building a new StreamingDataset, so milestones cut a run into segments; `segment_bounds`
  puts them on optimizer-step boundaries.
"""
from __future__ import annotations

import bisect
import math
from typing import Any

SHAPES = ("1-sqrt", "linear", "cosine", "inverse_sqrt")


def lr_factor(tokens: float, t_warmup: float, t_max: float, t_decay: float, alpha_f: float, shape: str = "1-sqrt") -> float:
    if shape not in SHAPES:
        raise ValueError(f"unknown decay shape {shape!r}; choose one of {SHAPES}")
    if tokens < t_warmup:
        return 1e-10 + (1 - 1e-10) * tokens / t_warmup
    decay_start = t_max - t_decay
    if tokens < decay_start or t_decay <= 0:
        return 1.0
    x = min(1.0, (tokens - decay_start) / t_decay)
    if shape == "1-sqrt":
        return alpha_f + (1 - alpha_f) * (1 - math.sqrt(x))
    if shape == "linear":
        return alpha_f + (1 - alpha_f) * (1 - x)
    if shape == "cosine":
        return alpha_f + (1 - alpha_f) * 0.5 * (1 + math.cos(math.pi * x))
    return 1 / math.sqrt(1 + (alpha_f**-2 - 1) * x)


def mask_ratio_at(tokens: float, points: list[tuple[float, float]], mode: str = "linear") -> float:
    """`points` sorted by tokens; before the first point its ratio, after the last the last ratio."""
    if mode not in ("linear", "steps"):
        raise ValueError(f"mask ratio mode {mode!r}: choose linear or steps")
    xs = [t for t, _ in points]
    i = bisect.bisect_right(xs, tokens)
    if i == 0:
        return points[0][1]
    if i == len(points) or mode == "steps":
        return points[i - 1][1]
    (t0, r0), (t1, r1) = points[i - 1], points[i]
    return r0 + (r1 - r0) * (tokens - t0) / (t1 - t0)


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
