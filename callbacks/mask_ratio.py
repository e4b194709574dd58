"""Mask ratio as a pure function of tokens: constant (mmBERT: per stage), or annealed within a stage
through (tokens, ratio) points, linearly or as steps."""
from __future__ import annotations

import bisect

import lightning as L

from .clock import tokens_at_step_start


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


class MaskRatioSchedule(L.Callback):
    def __init__(self, points: list[tuple[float, float]] | float, mode: str = "linear") -> None:
        points = [(0.0, float(points))] if isinstance(points, (int, float)) else [(float(t), float(r)) for t, r in points]
        if not points or any(not 0 < r < 1 for _, r in points) or any(b[0] <= a[0] for a, b in zip(points, points[1:])):
            raise ValueError(f"mask ratio points {points}: ratios in (0, 1), token counts strictly increasing")
        mask_ratio_at(0, points, mode)
        self.points, self.mode = points, mode

    def at(self, tokens: float) -> float:
        return mask_ratio_at(tokens, self.points, self.mode)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        tokens = tokens_at_step_start(trainer, pl_module, batch_idx)
        if tokens is None:
            return
        pl_module.mask_ratio = self.at(tokens)
