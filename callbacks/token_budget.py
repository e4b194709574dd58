"""Stops training at the first optimizer step that reaches the token budget, and logs what the
tokens cost: throughput, MFU (model FLOPs over a given peak) and packing efficiency."""
from __future__ import annotations

import time

import lightning as L
import torch

from mmbert_pl.training.step_values import logs_this_batch, report


def attention_pairs(lengths: torch.Tensor, half: int) -> tuple[int, int]:
    """(query, key) pairs a layer scores over documents of these lengths: globally every pair of a
    document (n²); locally each query's keys within `half` positions, fewer at the document's edges."""
    n = lengths.long()
    local = torch.where(n <= half, n * n, n * (2 * half + 1) - half * (half + 1))
    return int((n * n).sum()), int(local.sum())


def train_flops_per_token(model: torch.nn.Module, mask_ratio: float, lengths: torch.Tensor) -> float:
    """Forward + backward FLOPs of one token over documents of `lengths`: 6 × the encoder's parameters,
    the MLM head and sparse decoder on the masked share only, and attention scores and values
    (12 × hidden per scored pair: local layers score only their window)."""
    cfg = model.cfg
    embedding = cfg.vocab_size * cfg.hidden_size
    head = sum(p.numel() for p in model.head.parameters())
    body = sum(p.numel() for p in model.parameters()) - embedding - cfg.vocab_size - head   # tied decoder weight, its bias
    tokens = max(int(lengths.sum()), 1)
    global_pairs, local_pairs = attention_pairs(lengths, cfg.local_window // 2)
    scored = sum(global_pairs if cfg.is_global(layer) else local_pairs for layer in range(cfg.num_layers))
    return 6 * body + 6 * (embedding + head) * mask_ratio + 12 * cfg.hidden_size * scored / tokens


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
        self._slots = self._real = 0              # token slots and real tokens in it (this rank)
        self._lengths: list[torch.Tensor] = []    # its document lengths

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
        lengths = (cu[:, 1:] - cu[:, :-1]).flatten()
        self._lengths.append(lengths[lengths > 0])
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
            flops = train_flops_per_token(pl_module.model, pl_module.mask_ratio, torch.cat(self._lengths))
            metrics["perf/mfu"] = flops * self._real / seconds / self.peak_flops
        report(pl_module, metrics, {"tok/s": tokens_per_s})
        self._since, self._slots, self._real, self._lengths = now, 0, 0, []
