"""Owner of the mask ratio: sets the module's ratio at each optimizer step from `mmbert_pl.core.schedules.mask_ratio_at`
(constant, or annealed through (tokens, ratio) points)."""
from __future__ import annotations

import lightning as L

from mmbert_pl.core.schedules import mask_ratio_at

from .clock import tokens_at_step_start


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
