"""Dropout whose mask is a hash of (token key, feature, layer) instead of a draw from the process's random stream.

A token's key comes from its row's seed and its position in the row (`training/step_inputs.py`), so a row gets the
same dropout in any micro-batch, on any rank, at any micro-batch size: a run trains the same numbers on 1, 2 or 8
processes, and a resume on another layout continues it exactly (torch's dropout would depend on which rank and
micro-batch the row landed in). The hash is integer arithmetic on 32-bit values held in int64 (no overflow), a few
element-wise passes that torch.compile fuses with the output projection.
"""
from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix (two multiply-xorshift rounds) of int64 values below 2^32."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & MASK32
    return (x >> 16) ^ x


def keyed_dropout(x: torch.Tensor, keys: torch.Tensor, layer: int, p: float) -> torch.Tensor:
    """Inverted dropout of `x` (tokens, features) with `keys` (tokens,) int64 below 2^32."""
    if p <= 0.0:
        return x
    width = x.shape[-1]
    features = (torch.arange(width, device=x.device, dtype=torch.int64) + layer * width) * 0x9E3779B1 & MASK32
    keep = hash32(keys[:, None] ^ features[None, :]) >= int(p * 2**32)
    return x * keep.to(x.dtype) * (1.0 / (1.0 - p))
