"""Every parameter of a model made distinct, for parity tests: an initialisation sets every LayerNorm weight to 1
and biases to 0, so a swapped pair of norms (or a bias loaded into the wrong place) would still match."""
from __future__ import annotations

import torch


@torch.no_grad()
def randomise_every_parameter(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        scale = 0.2 if p.ndim == 1 else float(p.std())
        p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return model
