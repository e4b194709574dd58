"""Stops training at the first optimizer step that reaches the token budget, and logs what the
tokens cost: throughput, MFU (model FLOPs over a given peak) and packing efficiency."""
from __future__ import annotations

import time

import lightning as L
import torch

from .reporting import logs_this_batch, report


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
    """Throughput is measured over the batches between two logger writes, not per batch: the host queues
    work ahead of the device, so one batch's host time says little. The logger's read-backs wait for the
    device, so an interval between them counts what the device did, to within a batch. Validation runs
    are left out of the interval."""

    def __init__(self, max_tokens: float, peak_flops: float | None = None) -> None:
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be > 0, got {max_tokens}")
        self.max_tokens, self.peak_flops = max_tokens, peak_flops
        self._since: float | None = None          # when the current interval began
        self._slots = self._real = self._docs = 0  # token slots, real tokens and documents in it (this rank)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._since = time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._paused = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._since is not None:     # validation during training is not training time
            self._since += time.perf_counter() - self._paused

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        ids, cu = batch["input_ids"], batch["cu_seqlens"]     # on the host
        self._slots += ids.numel()
        self._real += int(cu[:, -1].sum())
        self._docs += int(((cu[:, 1:] - cu[:, :-1]) > 0).sum())
        if pl_module.micro_index == 0 and pl_module.tokens >= self.max_tokens:   # right after an optimizer step
            trainer.should_stop = True
        if not logs_this_batch(trainer):
            return
        now = time.perf_counter()
        seconds = max(now - self._since, 1e-9)
        tokens_per_s = self._slots * trainer.world_size / seconds
        metrics = {"perf/tokens_per_s": tokens_per_s, "perf/packing_efficiency": self._real / self._slots,
                   "perf/tokens_seen": float(pl_module.tokens)}
        if self.peak_flops:
            flops = train_flops_per_token(pl_module.model, pl_module.mask_ratio, self._real / max(self._docs, 1))
            metrics["perf/mfu"] = flops * self._real / seconds / self.peak_flops
        report(pl_module, metrics, {"tok/s": tokens_per_s})
        self._since, self._slots, self._real, self._docs = now, 0, 0, 0
