"""flex_attention block masks for packed documents, built from block bounds instead of a token grid.

`create_block_mask` evaluates the mask on the full (tokens, tokens) grid: 1G elements per mask at
32k tokens a step, with int64 temporaries, twice a step (global and local). Whether a block pair
holds any, or only, allowed pairs follows from the first and last token of each block: documents
are contiguous, so two blocks share a document iff their document ranges overlap, and a window
bound on |q - kv| is met somewhere (everywhere) iff the nearest (farthest) tokens meet it. That is
(blocks, blocks) work; flex still applies the token-level mask inside partial blocks.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.attention.flex_attention import BlockMask

BLOCK = 128        # flex_attention's default sparse block size


def _ordered(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(blocks, blocks) bool -> per row the count of True columns and the columns, True first, ascending."""
    dense = dense.to(torch.int32)
    order = torch.argsort(dense, dim=-1, descending=True, stable=True)
    return dense.sum(-1)[None, None].to(torch.int32), order[None, None].to(torch.int32).contiguous()


def _block_mask(any_pair: torch.Tensor, all_pairs: torch.Tensor, mask_mod: Callable, total: int) -> BlockMask:
    partial = _ordered(any_pair & ~all_pairs)
    full = _ordered(all_pairs)
    return BlockMask.from_kv_blocks(partial[0], partial[1], full[0], full[1], BLOCK_SIZE=BLOCK,
                                    mask_mod=mask_mod, seq_lengths=(total, total))


def document_mask_mods(doc: torch.Tensor, half_window: int) -> tuple[Callable, Callable]:
    """Token-level (global, local) mask_mods: same document; same document and |q - kv| <= half_window."""

    def same_doc(b, h, q, kv):
        return doc[q] == doc[kv]

    def same_doc_window(b, h, q, kv):
        return (doc[q] == doc[kv]) & ((q - kv).abs() <= half_window)

    return same_doc, same_doc_window


def document_block_masks(doc: torch.Tensor, half_window: int) -> tuple[BlockMask, BlockMask]:
    """(global, local) block masks of a flat stream whose token i belongs to document `doc[i]` (non-decreasing).

    Global: same document. Local: same document and |q - kv| <= half_window.
    """
    total = doc.numel()
    start = torch.arange(0, total, BLOCK, device=doc.device)
    end = torch.clamp(start + BLOCK, max=total) - 1                  # last token of each block
    first, last = doc[start], doc[end]
    complete = (end - start + 1) == BLOCK                            # the tail block is padded: never full
    overlap = torch.maximum(first[:, None], first[None, :]) <= torch.minimum(last[:, None], last[None, :])
    one_doc = (first == last) & complete
    same_doc_everywhere = one_doc[:, None] & one_doc[None, :] & (first[:, None] == first[None, :])
    near = torch.maximum(start[None, :] - end[:, None], start[:, None] - end[None, :]) <= half_window
    far = torch.maximum(end[None, :] - start[:, None], end[:, None] - start[None, :]) <= half_window
    same_doc, same_doc_window = document_mask_mods(doc, half_window)
    return (_block_mask(overlap, same_doc_everywhere, same_doc, total),
            _block_mask(overlap & near, same_doc_everywhere & far, same_doc_window, total))
