"""MLM masking, done inside `training_step` (ecosystem-notes §2.4; recipe §3), on the host since the
masks decide which tokens the device gets (`step_inputs.py`).

Each position holding an ordinary token is chosen with probability p; framing and special tokens
(bos, eos, cls, sep, pad, mask, unk) never are. Of the chosen, 80% become `<mask>`, 10% a random
ordinary token (never a special id), 10% stay. In training each row draws from its own generator, seeded from
(seed, step, the row's sample id): a resumed run masks exactly like an uninterrupted one, and a row is masked
the same on any number of processes and at any micro-batch size.
"""
from __future__ import annotations

import torch


def row_seeds(seed: int, step: int, rows: list[int]) -> list[int]:
    """A 63-bit seed per row that differs for every (seed, step, row): in training `rows` are the sample ids."""
    base = (seed * 1_000_003 + step) * 1_000_033
    return [(base + row) * 1_000_037 % (2**63 - 1) for row in rows]


def row_draws(seeds: list[int], row_length: int, pool_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(uniforms, random-replacement picks), each (rows, row_length), row i from its own generator."""
    u, picks = torch.empty(len(seeds), row_length), torch.empty(len(seeds), row_length, dtype=torch.long)
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(s)
        torch.rand(row_length, generator=g, out=u[i])
        torch.randint(pool_size, (row_length,), generator=g, out=picks[i])
    return u, picks


def ordinary_lookup(random_pool: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(vocab_size,) bool: True for the ids masking may choose, the tokenizer's ordinary pieces."""
    table = torch.zeros(vocab_size, dtype=torch.bool)
    table[random_pool] = True
    return table


def mlm_mask(
    input_ids: torch.Tensor,
    ratio: float,
    mask_id: int,
    random_pool: torch.Tensor,
    generator: torch.Generator,
    maskable: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels): labels hold the original id where chosen, -100 elsewhere.

    `random_pool` lists the ids random replacement may draw (the tokenizer's ordinary pieces);
    `maskable` (bool, same shape) says which positions may be chosen (`ordinary_lookup(pool)[ids]`
    leaves special tokens alone); by default every position is maskable.
    """
    device = input_ids.device
    u = torch.rand(input_ids.shape, generator=generator, device=generator.device).to(device)
    picks = torch.randint(len(random_pool), input_ids.shape, generator=generator, device=generator.device).to(device)
    return apply_mask(input_ids, ratio, mask_id, random_pool, u, picks, maskable)


def apply_mask(input_ids: torch.Tensor, ratio: float, mask_id: int, random_pool: torch.Tensor, u: torch.Tensor,
               picks: torch.Tensor, maskable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`mlm_mask` with its draws given: `u` uniforms and `picks` indices into `random_pool`, one per position."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    device = input_ids.device
    chosen = u < ratio
    if maskable is not None:
        chosen &= maskable
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    to_mask = u < 0.8 * ratio
    to_random = (u >= 0.8 * ratio) & (u < 0.9 * ratio) & chosen
    inputs = torch.where(to_mask & chosen, torch.full_like(input_ids, mask_id), input_ids)
    inputs = torch.where(to_random, random_pool.to(device)[picks], inputs)
    return inputs, labels
