"""Stops training at the first optimizer step that reaches the token budget, and logs what the
tokens cost: throughput, MFU (model FLOPs over a given peak) and packing efficiency."""
from __future__ import annotations

import time

import lightning as L
import torch


def train_flops_per_token(model: torch.nn.Module, mask_ratio: float, mean_context: float) -> float:
    """Forward + backward FLOPs of one token: 6 × body parameters, the sparse decoder on the masked
    share, and attention scores over the context a token sees (local layers see at most their window)."""
    cfg = model.cfg
    embedding = cfg.vocab_size * cfg.hidden_size
    body = sum(p.numel() for p in model.parameters()) - embedding - cfg.vocab_size   # tied decoder weight, decoder bias
    attention = 0.0
    for layer in range(cfg.num_layers):
        context = mean_context if cfg.is_global(layer) else min(mean_context, cfg.local_window + 1)
        attention += 12 * cfg.hidden_size * context
    return 6 * body + 6 * embedding * mask_ratio + attention


class TokenBudget(L.Callback):
    def __init__(self, max_tokens: float, peak_flops: float | None = None) -> None:
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be > 0, got {max_tokens}")
        self.max_tokens, self.peak_flops = max_tokens, peak_flops
        self._t0: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        ids, cu = batch["input_ids"], batch["cu_seqlens"]
        seconds = max(time.perf_counter() - self._t0, 1e-9)
        tokens = ids.numel() * trainer.world_size
        real = int(cu[:, -1].sum())
        docs = int(((cu[:, 1:] - cu[:, :-1]) > 0).sum())
        metrics = {"perf/tokens_per_s": tokens / seconds, "perf/packing_efficiency": real / ids.numel(),
                   "perf/tokens_seen": float(pl_module.tokens_seen)}
        if self.peak_flops:
            flops = train_flops_per_token(pl_module.model, pl_module.mask_ratio, real / max(docs, 1))
            metrics["perf/mfu"] = flops * real * trainer.world_size / seconds / (self.peak_flops * trainer.world_size)
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)
        pl_module.log("tok/s", metrics["perf/tokens_per_s"], on_step=True, on_epoch=False, prog_bar=True, logger=False)
        if pl_module.micro_index == 0 and int(pl_module.tokens_seen) >= self.max_tokens:   # right after an optimizer step
            trainer.should_stop = True
