"""What one micro-batch sends to the device: worked out on the host, moved in one copy.

The loader's batch stays on the host (`MLMModule.transfer_batch_to_device`). Dropping padding,
drawing the masks and finding the labelled tokens are data-dependent: on the device each would
make the host wait (a boolean index, `.item()`, a pageable copy). On the host they cost
microseconds, and the device receives exactly what the encoder needs in one non-blocking copy,
so the host can queue the next step while the device still runs this one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mmbert_pl.data.rows import flatten_rows
from mmbert_pl.training.masking import mlm_mask
from mmbert_pl.model.documents import to_device


@dataclass
class StepInputs:
    input_ids: torch.Tensor     # (tokens,) on the device, masked
    cu_seqlens: torch.Tensor    # (docs + 1,) int32 on the host
    max_seqlen: int
    positions: torch.Tensor     # (labels,) on the device: the labelled tokens
    targets: torch.Tensor       # (labels,) on the device: their original ids


def step_inputs(batch: dict, ratio: float, mask_id: int, random_pool: torch.Tensor, seed: int,
                device: torch.device, ordinary: torch.Tensor) -> StepInputs:
    """Packed rows (on the host) -> the masked flat stream and its labels on `device`. `ordinary`
    (`masking.ordinary_lookup`): the ids that may be masked; special and framing tokens stay as they are."""
    ids, cu, max_len = flatten_rows(batch["input_ids"], batch["cu_seqlens"])
    inputs, labels = mlm_mask(ids, ratio, mask_id, random_pool, torch.Generator().manual_seed(seed), ordinary[ids])
    positions = (labels != -100).nonzero().squeeze(1)
    moved = to_device(torch.cat([inputs, positions, labels[positions]]), device)
    inputs, positions, targets = moved.split([inputs.numel(), positions.numel(), positions.numel()])
    return StepInputs(inputs, cu, max_len, positions, targets)
