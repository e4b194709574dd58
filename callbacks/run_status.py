"""Shows what a run is doing on the progress bar and in the logs: tokens/s, LR, mask ratio, τ, languages."""
from __future__ import annotations

import time

import lightning as L


class RunStatus(L.Callback):
    def __init__(self, row_length: int, temperature: float, languages: int) -> None:
        self.row_length, self.temperature, self.languages = row_length, temperature, languages
        self._t0: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        rows = batch["input_ids"].shape[0] * trainer.world_size
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        self._t0 = time.perf_counter()
        pl_module.log_dict({
            "tok/s": rows * self.row_length / elapsed,
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "mask": float(pl_module.mask_ratio),
            "tau": self.temperature,
            "langs": float(self.languages),
        }, prog_bar=True, on_step=True, on_epoch=False)
