"""Training-step values to the logger and the progress bar without making the host wait for the device.

On an accelerator `self.log(x)` of a Python number creates a device tensor (a blocking copy), and
every tensor logged with `prog_bar=True` is read back (`.item()`) at every later batch of the epoch.
Either stalls the host until the device has caught up, so the device idles while the host prepares
the next step. Here callbacks `report` host numbers, the module logs them (and reads its loss back)
only on the batches Lightning writes to the logger (`trainer.log_every_n_steps`), and the progress
bar shows host-side numbers.
"""
from __future__ import annotations

import lightning as L


def logs_this_batch(trainer: L.Trainer) -> bool:
    """Whether Lightning writes this training batch's step metrics to the logger (every
    `log_every_n_steps` batches, and at the last one): logged values on other batches are never written."""
    return trainer._logger_connector.should_update_logs


def report(pl_module: L.LightningModule, values: dict[str, float], shown: dict[str, float] | None = None) -> None:
    """Host numbers of the current step: `values` for the logger (the module logs them, with its loss, on
    the batches the logger writes), `shown` for the progress bar."""
    pl_module.step_values.update(values)
    pl_module.shown.update(shown or {})
