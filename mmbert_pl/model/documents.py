"""Flat token streams with document boundaries: the encoder's native input.

Every layer sees `(tokens, hidden)` with no padding. `cu_seqlens` marks where each document
starts; attention never crosses it and RoPE positions restart at each start.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`t` on `device` without making the host wait for the device: a host tensor bound for CUDA goes
    through pinned memory with a non-blocking copy (a plain copy from pageable memory synchronises)."""
    device = torch.device(device)
    if t.device == device or (device.type == t.device.type and device.index is None):
        return t
    if t.device.type == "cpu" and device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def cu_seqlens_from_lengths(lengths: torch.Tensor) -> torch.Tensor:
    return F.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))


def position_ids_from_cu_seqlens(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    starts = cu_seqlens[:-1].long().repeat_interleave(lengths, output_size=total)
    return torch.arange(total, device=cu_seqlens.device) - starts


@dataclass
class Unpadded:
    """The non-padding tokens of a padded batch, and how to put them back."""
    input_ids: torch.Tensor      # (tokens,)
    indices: torch.Tensor        # (tokens,) flat positions in the padded (batch*seq) grid
    cu_seqlens: torch.Tensor     # (docs+1,) int32
    max_seqlen: int
    batch: int
    seqlen: int

    def repad(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(tokens, ...) -> (batch, seq, ...) with `fill` at padding positions."""
        out = values.new_full((self.batch * self.seqlen, *values.shape[1:]), fill)
        out[self.indices] = values
        return out.view(self.batch, self.seqlen, *values.shape[1:])


def unpad(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Unpadded:
    """Drop padding from a right-padded (batch, seq) batch; each row is one document."""
    if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} must both be (batch, seq)")
    mask = attention_mask.bool()
    lengths = mask.sum(-1, dtype=torch.int32)
    lengths = lengths[lengths > 0]
    indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
    return Unpadded(
        input_ids=input_ids.flatten()[indices],
        indices=indices,
        cu_seqlens=cu_seqlens_from_lengths(lengths),
        max_seqlen=int(lengths.max()) if lengths.numel() else 0,
        batch=input_ids.shape[0],
        seqlen=input_ids.shape[1],
    )


@dataclass
class DocumentContext:
    """What every layer of one forward pass shares: positions, RoPE tables (per θ), the backend's plan."""
    position_ids: torch.Tensor
    plan: Any
    rope: dict[float, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    dropout_keys: torch.Tensor | None = None    # (tokens,): keyed dropout (pre-training), else torch's
