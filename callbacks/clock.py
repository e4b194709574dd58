"""The token clock every schedule reads: global tokens (padding included) before the current optimizer step."""
from __future__ import annotations

import lightning as L


def tokens_at_step_start(trainer: L.Trainer, pl_module: L.LightningModule, batch_idx: int) -> int | None:
    """Tokens seen when an optimizer step begins; None on the other micro-batches of the step."""
    if pl_module.micro_index:
        return None
    return pl_module.tokens
