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

from mmbert_pl.data.rows import flatten_rows, used_tokens
from mmbert_pl.model.documents import to_device
from mmbert_pl.model.keyed_dropout import MASK32, hash32
from mmbert_pl.training.masking import apply_mask, row_draws


@dataclass
class StepInputs:
    input_ids: torch.Tensor     # (tokens,) on the device, masked
    cu_seqlens: torch.Tensor    # (docs + 1,) int32 on the host
    max_seqlen: int
    positions: torch.Tensor     # (labels,) on the device: the labelled tokens
    targets: torch.Tensor       # (labels,) on the device: their original ids
    dropout_keys: torch.Tensor  # (tokens,) on the device: each token's key for `keyed_dropout` (row seed, position)


def step_inputs(batch: dict, ratio: float, mask_id: int, random_pool: torch.Tensor, seeds: list[int],
                device: torch.device, ordinary: torch.Tensor) -> StepInputs:
    """Packed rows (on the host) -> the masked flat stream and its labels on `device`. `seeds`: one per row
    (`masking.row_seeds`), so a row's masks and dropout do not depend on its neighbours. `ordinary`
    (`masking.ordinary_lookup`): the ids that may be masked; special and framing tokens stay as they are."""
    row_length = batch["input_ids"].shape[1]
    ids, cu, max_len = flatten_rows(batch["input_ids"], batch["cu_seqlens"])
    used = used_tokens(batch["input_ids"], batch["cu_seqlens"])
    u, picks = row_draws(seeds, row_length, len(random_pool))
    inputs, labels = apply_mask(ids, ratio, mask_id, random_pool, u[used], picks[used], ordinary[ids])
    keys = hash32((torch.tensor(seeds, dtype=torch.int64)[:, None] & MASK32) ^ torch.arange(row_length)[None, :])[used]
    positions = (labels != -100).nonzero().squeeze(1)
    moved = to_device(torch.cat([inputs, positions, labels[positions], keys]), device)
    inputs, positions, targets, keys = moved.split([inputs.numel(), positions.numel(), positions.numel(), keys.numel()])
    return StepInputs(inputs, cu, max_len, positions, targets, keys)
