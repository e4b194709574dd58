"""The mmBERT encoder and its MLM head, with parameter names identical to HF ModernBERT.

`MMBertForMaskedLM.state_dict()` keys equal `transformers.ModernBertForMaskedLM`'s, so export and
import are a config translation plus a file copy (recipe §1.8).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import make_backend
from .config import EncoderConfig
from .documents import DocumentContext, position_ids_from_cu_seqlens, to_device, unpad
from .layers import EncoderLayer, layer_norm
from .mlm_loss import chunked_cross_entropy


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_id)
        self.norm = layer_norm(cfg)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.norm(self.tok_embeddings(input_ids))


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, attn_backend: str = "auto") -> None:
        super().__init__()
        self.cfg = cfg
        self.backend = make_backend(attn_backend, cfg.local_window)
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg, i, self.backend) for i in range(cfg.num_layers))
        self.final_norm = layer_norm(cfg)

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                dropout_keys: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (tokens, hidden) of a flat stream of documents. `cu_seqlens` may stay on the host:
        then nothing here waits for the device (the backends' plans read it there). `dropout_keys`: see
        `keyed_dropout.py`."""
        total, device = input_ids.shape[0], input_ids.device
        if max_seqlen > self.cfg.max_position:
            raise ValueError(f"a document of {max_seqlen} tokens exceeds max_position {self.cfg.max_position}")
        cu_device = to_device(cu_seqlens, device)
        ctx = DocumentContext(
            position_ids=position_ids_from_cu_seqlens(cu_device, total),
            plan=self.backend.plan(cu_seqlens, max_seqlen, total, cu_device),
            dropout_keys=dropout_keys,
        )
        x = self.embeddings(input_ids)
        for layer in self.layers:
            x = layer(x, ctx)
        return self.final_norm(x)


class MLMHead(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)
        self.norm = layer_norm(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(x)))


@dataclass
class MLMOutput:
    logits: torch.Tensor | None = None        # (tokens, vocab); only without labels
    loss: torch.Tensor | None = None
    predictions: torch.Tensor | None = None   # argmax at the labelled tokens; with labels, in eval mode
    num_labels: int = 0
    hidden: torch.Tensor | None = None        # (tokens, hidden) final hidden states; only with encode_only


class MMBertForMaskedLM(nn.Module):
    def __init__(self, cfg: EncoderConfig, attn_backend: str = "auto", loss_chunk_rows: int = 2048) -> None:
        super().__init__()
        self.cfg = cfg
        self.loss_chunk_rows = loss_chunk_rows   # labelled tokens per decoder chunk in the loss (see mlm_loss.py)
        self.compiled_loss = False               # compile_blocks: the loss's softmax and gradient in fused passes
        self.model = Encoder(cfg, attn_backend)
        self.head = MLMHead(cfg)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=True)
        self.decoder.weight = self.model.embeddings.tok_embeddings.weight
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """`full_megatron` init (recipe §1.6): truncated normal at +-cutoff*std, smaller std for output projections."""
        cfg = self.cfg
        out_std = cfg.init_std / math.sqrt(2.0 * cfg.num_layers)
        for name, p in self.named_parameters():
            if name == "decoder.bias":
                # Never passed to the init when tied: PyTorch's default U(+-1/sqrt(fan_in)) (recipe §1.6).
                bound = 1.0 / math.sqrt(cfg.hidden_size)
                nn.init.uniform_(p, -bound, bound)
            elif p.dim() == 1:
                nn.init.ones_(p)
            else:
                std = out_std if name.endswith(("attn.Wo.weight", "mlp.Wo.weight")) else cfg.init_std
                nn.init.trunc_normal_(p, 0.0, std, -cfg.init_cutoff * std, cfg.init_cutoff * std)

    def forward(
        self,
        input_ids: torch.Tensor,
        cu_seqlens: torch.Tensor,
        max_seqlen: int,
        labels: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        encode_only: bool = False,
        dropout_keys: torch.Tensor | None = None,
    ) -> MLMOutput:
        """Flat stream in; with labels, the head and decoder run only on labelled tokens and the loss never
        holds their (labels, vocab) logits in fp32. `labels` holds a target per token (-100 = none), or, with
        `positions`, the targets of those tokens only: finding the labelled tokens then needs no host sync.
        `encode_only`: the final hidden states alone, through this module's forward (under FSDP its hooks
        gather the root group's weights, which a call of `self.model` alone would find sharded)."""
        hidden = self.model(input_ids, cu_seqlens, max_seqlen, dropout_keys)
        if encode_only:
            return MLMOutput(hidden=hidden)
        if labels is None:
            return MLMOutput(logits=self.decoder(self.head(hidden)))
        if positions is None:
            positions = (labels != -100).nonzero().squeeze(1)
            labels = labels[positions]
        loss, predictions = chunked_cross_entropy(self.head(hidden.index_select(0, positions)), self.decoder.weight,
                                                  self.decoder.bias, labels, self.loss_chunk_rows, predict=not self.training,
                                                  compiled=self.compiled_loss)
        return MLMOutput(loss=loss, predictions=predictions, num_labels=positions.numel())

    def forward_padded(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq) right-padded rows, one document each -> logits (batch, seq, vocab), zeros at padding."""
        u = unpad(input_ids, attention_mask)
        logits = self.forward(u.input_ids, u.cu_seqlens, u.max_seqlen).logits
        return u.repad(logits)

    def compile_blocks(self) -> None:
        """Compile every layer's dense parts (see `EncoderLayer.compile_blocks`) and the loss's per-chunk
        softmax and gradient; parameters and state_dict keys are unchanged."""
        for layer in self.model.layers:
            layer.compile_blocks()
        self.compiled_loss = True

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
