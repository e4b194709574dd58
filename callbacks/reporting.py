"""The progress bar: Lightning's, showing the host-side numbers the schedules report (`mmbert_pl.step_values`)
instead of reading device tensors back every batch."""
from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class ProgressBar(TQDMProgressBar):
    """Lightning's bar, showing the module's `shown` numbers (loss, tokens/s, schedules) next to its own."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        shown = {k: f"{v:.4g}" for k, v in getattr(pl_module, "shown", {}).items()}
        return {**super().get_metrics(trainer, pl_module), **shown}
