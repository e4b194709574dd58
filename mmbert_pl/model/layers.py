"""One pre-norm encoder layer: attention with RoPE, then a GeGLU MLP (recipe §1.2–§1.4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig
from .documents import DocumentContext
from .keyed_dropout import keyed_dropout
from .rope import apply_rope, rope_cos_sin


def layer_norm(cfg: EncoderConfig, width: int | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(width or cfg.hidden_size, eps=cfg.norm_eps, bias=False)


class Attention(nn.Module):
    def __init__(self, cfg: EncoderConfig, layer_id: int, backend) -> None:
        super().__init__()
        self.heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.is_global = cfg.is_global(layer_id)
        self.theta = cfg.global_rope_theta if self.is_global else cfg.local_rope_theta
        self.Wqkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=False)
        self.Wo = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)
        self.out_drop = nn.Dropout(cfg.attn_out_dropout)
        self.layer_id, self.backend = layer_id, backend

    def rope(self, ctx: DocumentContext) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin of this layer's theta, computed once per forward and shared by the layers that use it."""
        if self.theta not in ctx.rope:
            ctx.rope[self.theta] = rope_cos_sin(ctx.position_ids, self.head_dim, self.theta)
        return ctx.rope[self.theta]

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v, each (tokens, heads, head_dim), with RoPE applied to queries and keys."""
        q, k, v = self.Wqkv(x).view(-1, 3, self.heads, self.head_dim).unbind(1)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def output(self, attended: torch.Tensor, dropout_keys: torch.Tensor | None) -> torch.Tensor:
        """With `dropout_keys` (pre-training), the dropout mask is a function of each token's row and position."""
        out = self.Wo(attended.reshape(attended.shape[0], -1))
        if dropout_keys is not None and self.training:
            return keyed_dropout(out, dropout_keys, self.layer_id, self.out_drop.p)
        return self.out_drop(out)


class GeGLU(nn.Module):
    """Wi produces [input | gate]; the first half goes through gelu."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.Wi = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.Wo = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp, gate = self.Wi(x).chunk(2, dim=-1)
        return self.Wo(F.gelu(inp) * gate)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: EncoderConfig, layer_id: int, backend) -> None:
        super().__init__()
        # Layer 0 needs no attention norm: the embedding LayerNorm already normalised its input.
        self.attn_norm = nn.Identity() if layer_id == 0 else layer_norm(cfg)
        self.attn = Attention(cfg, layer_id, backend)
        self.mlp_norm = layer_norm(cfg)
        self.mlp = GeGLU(cfg)

    def before_attention(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.attn.project(self.attn_norm(x), cos, sin)

    def after_attention(self, x: torch.Tensor, attended: torch.Tensor, dropout_keys: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn.output(attended, dropout_keys)
        return x + self.mlp(self.mlp_norm(x))

    def forward(self, x: torch.Tensor, ctx: DocumentContext) -> torch.Tensor:
        q, k, v = self.before_attention(x, *self.attn.rope(ctx))
        attended = self.attn.backend(q, k, v, ctx.plan, local=not self.attn.is_global)
        return self.after_attention(x, attended, ctx.dropout_keys)

    def compile_blocks(self) -> None:
        """torch.compile the dense parts around attention; the attention call and the document plan stay eager
        (their shapes and masks change every batch). Dynamic shapes: the token count varies per step."""
        self.before_attention = torch.compile(self.before_attention, dynamic=True)
        self.after_attention = torch.compile(self.after_attention, dynamic=True)
