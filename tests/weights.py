"""Comparing trained weights: a difference relative to each tensor's largest entry, so one bound serves embeddings,
norms and Adam moments alike. Reduction-order noise is ~1e-6 of a tensor; one Adam step (lr 8e-4 on weights of
~0.05, a β step on the moments) is ~1e-2 of it."""
from __future__ import annotations

import torch


def relative(x: torch.Tensor, y: torch.Tensor) -> float:
    """max |x - y| over max |x|."""
    x, y = x.float(), y.float()
    return float((x - y).abs().max() / x.abs().max().clamp(min=1e-30))


def max_relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest `relative` difference over the tensors of two state dicts with the same keys."""
    assert set(a) == set(b)
    return max(relative(a[k], b[k]) for k in a)
