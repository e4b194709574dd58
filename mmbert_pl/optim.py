"""StableAdamW exactly as ModernBERT/mmBERT train with it (recipe §4; optimi's `stableadamw`).

Bias correction is folded into the betas; the update is clipped per tensor by the RMS of
g²/v (Adafactor-style); weight decay is fully decoupled: scaled by lr/max_lr, not by lr.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class StableAdamW(torch.optim.Optimizer):
    def __init__(self, params: Iterable, lr: float = 8e-4, betas: tuple[float, float] = (0.9, 0.95),
                 eps: float = 1e-8, weight_decay: float = 8e-5, max_lr: float | None = None) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid StableAdamW settings: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, max_lr=max_lr or lr))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd, max_lr = group["lr"], group["eps"], group["weight_decay"], group["max_lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                b1 = (beta1**t - beta1) / (beta1**t - 1)
                b2 = (beta2**t - beta2) / (beta2**t - 1)
                g = p.grad
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                # A 0-dim tensor, never a Python float: no device sync per parameter.
                step_lr = lr / (g * g / v.clamp_min(eps * eps)).mean().sqrt().clamp_min(1.0)
                if wd:
                    p.mul_(1 - step_lr / max_lr * wd)
                p.sub_(m / v.sqrt().add_(eps) * step_lr)
        return loss


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No decay on norms and biases (ndim <= 1 or name ending in .bias); the tied embedding counts once."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
