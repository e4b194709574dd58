"""The progress bar: Lightning's, showing the host-side numbers the schedules report (`mmbert_pl.training.step_values`)
instead of reading device tensors back every batch, and one validation bar over all languages (Lightning's
restarts, and prints, a bar per validation dataloader: 44 lines per validation with 22 languages)."""
from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf


class ProgressBar(TQDMProgressBar):
    """Lightning's bar, showing the module's `shown` numbers (loss, tokens/s, schedules) next to its own."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        shown = {k: f"{v:.4g}" for k, v in getattr(pl_module, "shown", {}).items()}
        return {**super().get_metrics(trainer, pl_module), **shown}

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        if dataloader_idx == 0 and batch_idx == 0:
            self.val_progress_bar.reset(total=convert_inf(self.total_val_batches))
            self.val_progress_bar.set_description(f"{self.validation_description} ({len(trainer.val_dataloaders)} languages)")

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        bar = self.val_progress_bar        # drawn about ten times per validation, not at every batch
        bar.n += 1
        if bar.n == bar.total or bar.n % max(1, (bar.total or 100) // 10) == 0:
            bar.refresh()
