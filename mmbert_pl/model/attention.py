"""Attention backends over packed documents, all computing the same function.

Every backend takes `q`, `k`, `v`, each of shape (tokens, heads, head_dim), for the flat stream of
one forward pass and returns (tokens, heads, head_dim). A query attends to keys of its own document
only; on local layers only to keys with |i - j| <= window // 2 (recipe §1.3). The three come as
separate tensors, not one packed (tokens, 3, heads, head_dim): splitting a packed tensor here would
make its backward stack the three gradients into one, an extra copy in every layer (0.29 ms a layer
for `base` at 32k tokens on an H200).

- `flash`: flash-attn varlen kernel with a sliding window (CUDA, bf16/fp16, optional install).
- `varlen`: the same FlashAttention-2 varlen kernel as built into PyTorch
           (`torch.nn.attention.varlen.varlen_attn`, with its sliding window; CUDA, bf16/fp16), no install.
- `sdpa`:  documents sorted by length and padded into a few buckets, then PyTorch SDPA with a
           key-padding mask. Runs anywhere; padding only costs inside attention. Local layers over
           long documents attend block by block (each block of queries sees its own and the two
           neighbouring key blocks), so their cost grows linearly with length, not quadratically.
- `flex`:  PyTorch flex_attention with a document + window block mask on the flat stream, built
           per block rather than per token pair (flex_block_mask.py)
           (trains on CUDA only: PyTorch has no flex backward on CPU).
"""
from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .documents import to_device

BACKENDS = ("auto", "sdpa", "flex", "flash", "varlen")


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


@dataclass
class _Bucket:
    shape: tuple[int, int]     # (docs, padded length)
    global_mask: torch.Tensor | None
    local_mask: torch.Tensor | None   # (docs, 1, len, len), or (docs * blocks, 1, block, 3 * block) when `block`
    block: int = 0             # > 0: local attention runs blockwise with blocks of this many queries


@dataclass
class _SDPAPlan:
    gather: torch.Tensor       # flat token index of every padded slot of every bucket, bucket after bucket
    buckets: list[_Bucket]
    order: torch.Tensor        # for each token of the stream, the bucket slot that holds its output


class SDPABackend:
    """Length-bucketed SDPA: gathers documents of similar length into padded blocks.

    Padding slots gather token 0; they are masked as keys and dropped as queries, so their
    values never matter. One gather in, one gather out: the backward pass is two scatters.
    The indices are worked out from host-side boundaries and sent in one copy, so a plan
    never waits for the device.
    """

    name = "sdpa"

    def __init__(self, window: int, slack: float = 0.25, max_bucket_tokens: int = 1 << 16, min_block: int = 64) -> None:
        self.half = window // 2
        self.slack = slack
        self.max_bucket_tokens = max_bucket_tokens
        self.block = max(self.half, min_block)    # >= half: a query's window lies within its block and the two beside it

    def _groups(self, lengths: list[int]) -> list[list[int]]:
        """Documents sorted by length, grouped while padding stays within `slack` of the real tokens."""
        groups: list[list[int]] = []
        real = 0
        for d in sorted(range(len(lengths)), key=lengths.__getitem__):
            if groups:
                padded = lengths[d] * (len(groups[-1]) + 1)
                if padded <= (1 + self.slack) * (real + lengths[d]) and padded <= self.max_bucket_tokens:
                    groups[-1].append(d)
                    real += lengths[d]
                    continue
            groups.append([d])
            real = lengths[d]
        return groups

    def plan(self, cu_seqlens: torch.Tensor, max_seqlen: int, total: int, cu_device: torch.Tensor | None = None) -> _SDPAPlan:
        """`cu_seqlens` on the host costs no host sync (on the device it is read back once); the plan lives
        where `cu_device` (the same boundaries on the stream's device; default `cu_seqlens`) does."""
        device = (cu_seqlens if cu_device is None else cu_device).device
        cu = cu_seqlens.tolist()
        lengths = [b - a for a, b in zip(cu[:-1], cu[1:])]
        groups = self._groups(lengths)
        gathers, slots, tokens, doc_lengths, offset = [], [], [], [], 0
        for group in groups:
            size = lengths[group[-1]]
            ar = torch.arange(size)
            start = torch.tensor([cu[d] for d in group])
            length = torch.tensor([lengths[d] for d in group])
            valid = ar[None, :] < length[:, None]
            index = start[:, None] + ar[None, :]
            gathers.append(torch.where(valid, index, 0).flatten())
            slots.append(valid.flatten().nonzero().squeeze(1) + offset)
            tokens.append(index[valid])
            doc_lengths.append(length)
            offset += len(group) * size
        order = torch.empty(total, dtype=torch.long)
        order[torch.cat(tokens)] = torch.cat(slots)
        gather, order, *lengths_on_device = to_device(torch.cat([torch.cat(gathers), order, *doc_lengths]), device).split(
            [offset, total, *map(len, groups)])
        buckets = []
        for group, length in zip(groups, lengths_on_device):
            size = lengths[group[-1]]
            ar = torch.arange(size, device=device)
            valid = ar[None, :] < length[:, None]
            global_mask = valid[:, None, None, :] if lengths[group[0]] != size else None   # sorted: the first is the shortest
            local_mask, block = global_mask, 0
            if size > 3 * self.block:
                local_mask, block = self._block_mask(length, size), self.block
            elif size - 1 > self.half:
                band = (ar[:, None] - ar[None, :]).abs() <= self.half
                # Padding queries may see anything in their band, so no row is fully masked (no NaN in backward).
                keep = valid[:, None, :] | ~valid[:, :, None]
                local_mask = (band[None] & keep)[:, None]
            buckets.append(_Bucket((len(group), size), global_mask, local_mask, block))
        return _SDPAPlan(gather, buckets, order)

    def _block_mask(self, length: torch.Tensor, size: int) -> torch.Tensor:
        """Mask of blockwise local attention: query block j against keys of blocks j-1, j, j+1."""
        B, blocks = self.block, -(-size // self.block)
        q_pos = torch.arange(blocks * B, device=length.device).view(blocks, B, 1)
        k_pos = (torch.arange(blocks, device=length.device) * B - B).view(blocks, 1, 1) + torch.arange(3 * B, device=length.device)
        band = ((q_pos - k_pos).abs() <= self.half) & (k_pos >= 0)                      # (blocks, B, 3B)
        n = length.view(-1, 1, 1, 1)
        # Padding queries see every key in their band (never a fully masked row, so no NaN in backward).
        keep = band[None] & ((k_pos[None] < n) | (q_pos[None] >= n))
        return keep.reshape(-1, 1, B, 3 * B)

    def _blockwise(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, b: _Bucket) -> torch.Tensor:
        docs, heads, size, dim = q.shape
        B = b.block
        blocks = -(-size // B)
        pad = blocks * B - size

        def windows(t: torch.Tensor) -> torch.Tensor:    # (docs, heads, len, dim) -> (docs * blocks, heads, 3B, dim)
            t = F.pad(t, (0, 0, B, B + pad)).unfold(2, 3 * B, B)                            # (docs, heads, blocks, dim, 3B)
            return t.permute(0, 2, 1, 4, 3).reshape(docs * blocks, heads, 3 * B, dim)

        qb = F.pad(q, (0, 0, 0, pad)).view(docs, heads, blocks, B, dim).transpose(1, 2).reshape(docs * blocks, heads, B, dim)
        o = F.scaled_dot_product_attention(qb, windows(k), windows(v), attn_mask=b.local_mask)
        return o.view(docs, blocks, heads, B, dim).transpose(1, 2).reshape(docs, heads, blocks * B, dim)[:, :, :size]

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: _SDPAPlan, local: bool) -> torch.Tensor:
        sizes = [b.shape[0] * b.shape[1] for b in plan.buckets]
        gathered = [t[plan.gather].split(sizes) for t in (q, k, v)]
        outs = []
        for b, *slots in zip(plan.buckets, *gathered):
            bq, bk, bv = (x.view(*b.shape, *x.shape[1:]).transpose(1, 2) for x in slots)   # each (docs, heads, len, dim)
            if local and b.block:
                o = self._blockwise(bq, bk, bv, b)
            else:
                o = F.scaled_dot_product_attention(bq, bk, bv, attn_mask=b.local_mask if local else b.global_mask)
            outs.append(o.transpose(1, 2).reshape(-1, o.shape[1], o.shape[3]))   # (docs * len, heads, dim)
        return torch.cat(outs)[plan.order]


class FlexBackend:
    """flex_attention on the flat stream with a block mask (compiled on CUDA, eager elsewhere)."""

    name = "flex"

    def __init__(self, window: int) -> None:
        from torch.nn.attention.flex_attention import flex_attention

        from .flex_block_mask import document_block_masks

        self.half = window // 2
        self._flex = flex_attention
        self._block_masks = document_block_masks
        self._compiled = None

    def plan(self, cu_seqlens: torch.Tensor, max_seqlen: int, total: int, cu_device: torch.Tensor | None = None):
        cu = cu_seqlens if cu_device is None else cu_device
        lengths = (cu[1:] - cu[:-1]).long()
        doc = torch.repeat_interleave(torch.arange(lengths.numel(), device=cu.device), lengths, output_size=total)
        return self._block_masks(doc, self.half)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan, local: bool) -> torch.Tensor:
        if not q.is_cuda and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
            raise ValueError("attention backend 'flex' has no backward pass on CPU in PyTorch; train with backend sdpa there")
        fn = self._flex
        if q.is_cuda:
            self._compiled = self._compiled or torch.compile(self._flex, dynamic=True)
            fn = self._compiled
        # (1, heads, tokens, dim) views of the token-major inputs; the output keeps the query's layout,
        # so turning it back to (tokens, heads, dim) is a view too.
        q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        out = fn(q, k, v, block_mask=plan[1] if local else plan[0])
        return out[0].transpose(0, 1)


class FlashBackend:
    """flash-attn 2 varlen kernel; needs CUDA tensors in bf16 or fp16."""

    name = "flash"

    def __init__(self, window: int) -> None:
        from flash_attn import flash_attn_varlen_func

        self.half = window // 2
        self._fn = flash_attn_varlen_func

    def plan(self, cu_seqlens: torch.Tensor, max_seqlen: int, total: int, cu_device: torch.Tensor | None = None):
        return (cu_seqlens if cu_device is None else cu_device).to(torch.int32), max_seqlen

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan, local: bool) -> torch.Tensor:
        cu, max_seqlen = plan
        window = (self.half, self.half) if local else (-1, -1)
        return self._fn(q, k, v, cu, cu, max_seqlen, max_seqlen, dropout_p=0.0, window_size=window)


def torch_varlen_attn():
    """PyTorch's built-in varlen FlashAttention with a sliding window, or None where this torch lacks it."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn if "window_size" in inspect.signature(varlen_attn).parameters else None


class VarlenBackend(FlashBackend):
    """PyTorch's own FlashAttention-2 varlen kernel (as `flash`, without flash-attn); CUDA, bf16 or fp16."""

    name = "varlen"

    def __init__(self, window: int) -> None:
        self.half = window // 2
        self._fn = torch_varlen_attn()
        if self._fn is None:
            raise ValueError(f"attention backend 'varlen' needs torch.nn.attention.varlen.varlen_attn with window_size; "
                             f"torch {torch.__version__} lacks it: use backend flex or sdpa")

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan, local: bool) -> torch.Tensor:
        if q.device.type not in ("cuda", "meta"):
            raise ValueError("attention backend 'varlen' runs PyTorch's FlashAttention kernels on CUDA only; use sdpa here")
        cu, max_seqlen = plan
        window = (self.half, self.half) if local else (-1, -1)
        return self._fn(q, k, v, cu, cu, max_seqlen, max_seqlen, window_size=window)


def make_backend(name: str, window: int):
    """Build the named backend. `auto`: flash-attn on CUDA when installed, else flex on CUDA (1.2-2.0x sdpa
    for `base` on an H200, README Performance), else sdpa."""
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {BACKENDS}")
    if name == "auto":
        name = "flash" if flash_attn_available() else "flex" if torch.cuda.is_available() else "sdpa"
    if name == "flash" and importlib.util.find_spec("flash_attn") is None:
        raise ValueError("attention backend 'flash' needs flash-attn: pip install 'mmbert_pl[gpu]', or use backend sdpa")
    return {"sdpa": SDPABackend, "flex": FlexBackend, "flash": FlashBackend, "varlen": VarlenBackend}[name](window)
