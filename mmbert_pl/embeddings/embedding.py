"""Document embeddings from the encoder: mean of the final hidden states over a document's tokens.

A document is framed like training text ([bos] ids [eos]) and truncated to `max_tokens` (its head is
kept: news and retrieval sentences put the content first). Documents run as one flat unpadded
stream per batch, so padding costs nothing.
"""
from __future__ import annotations

from pathlib import Path

import torch

from data_prep.tokenizer import load_tokenizer

from mmbert_pl.model import MMBertForMaskedLM
from mmbert_pl.model.documents import cu_seqlens_from_lengths


def tokenize(tokenizer_path: str | Path, texts: list[str], max_tokens: int) -> list[list[int]]:
    if max_tokens < 3:
        raise ValueError(f"max_tokens={max_tokens}: need room for [bos], one token and [eos]")
    tokenizer = load_tokenizer(tokenizer_path)
    return [tokenizer.frame(ids[: max_tokens - 2]) for ids in tokenizer.encode(texts)]


def batches_by_tokens(docs: list[list[int]], batch_tokens: int) -> list[list[int]]:
    """Consecutive document indices grouped so each group holds at most `batch_tokens` (one doc at least)."""
    groups, current, size = [], [], 0
    for i, doc in enumerate(docs):
        if current and size + len(doc) > batch_tokens:
            groups.append(current)
            current, size = [], 0
        current.append(i)
        size += len(doc)
    return groups + ([current] if current else [])


def pooled(hidden: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """(docs, hidden) means of a flat stream's hidden states per document."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    doc = torch.repeat_interleave(torch.arange(len(lengths), device=hidden.device), lengths)
    sums = torch.zeros(len(lengths), hidden.shape[1], dtype=torch.float32, device=hidden.device).index_add_(0, doc, hidden.float())
    return sums / lengths[:, None]


@torch.no_grad()
def embed(model: MMBertForMaskedLM, docs: list[list[int]], batch_tokens: int = 16384) -> torch.Tensor:
    """(len(docs), hidden) float32 mean-pooled embeddings, in the order of `docs`."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for group in batches_by_tokens(docs, batch_tokens):
        lengths = torch.tensor([len(docs[i]) for i in group])
        ids = torch.tensor([t for i in group for t in docs[i]], device=device)
        cu = cu_seqlens_from_lengths(lengths).to(device)
        out.append(pooled(model(ids, cu, int(lengths.max()), encode_only=True).hidden, cu).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.cfg.hidden_size)
