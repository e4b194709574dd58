"""Packed rows from the shards -> one flat stream of documents for the encoder.

A batch holds `input_ids` (rows, row_length) and `cu_seqlens` (rows, max pieces + 1) padded by
repeating each row's last boundary. Padding tokens are dropped: the encoder never computes them.
"""
from __future__ import annotations

import numpy as np
import torch


def collate_rows(samples: list[dict]) -> dict[str, torch.Tensor]:
    """input_ids first: StreamingDataLoader counts samples with len() of the first value."""
    width = max(len(s["cu_seqlens"]) for s in samples)
    cu = np.stack([np.pad(s["cu_seqlens"], (0, width - len(s["cu_seqlens"])), mode="edge") for s in samples])
    ids = np.stack([s["input_ids"] for s in samples]).astype(np.int64)
    batch = {"input_ids": torch.from_numpy(ids), "cu_seqlens": torch.from_numpy(cu.astype(np.int32))}
    if "sample_id" in samples[0]:
        batch["sample_ids"] = torch.tensor([s["sample_id"] for s in samples], dtype=torch.long)
    return batch


def used_tokens(input_ids: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """(rows, row_length) bool: the non-padding positions, those before each row's last boundary."""
    return torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] < cu_seqlens[:, -1:]


def flatten_rows(input_ids: torch.Tensor, cu_seqlens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(flat ids, flat cu_seqlens, max document length) of the non-padding tokens, rows in order."""
    keep = used_tokens(input_ids, cu_seqlens)
    lengths = (cu_seqlens[:, 1:] - cu_seqlens[:, :-1]).flatten()
    lengths = lengths[lengths > 0]
    flat_cu = torch.nn.functional.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))
    return input_ids[keep], flat_cu, int(lengths.max())
