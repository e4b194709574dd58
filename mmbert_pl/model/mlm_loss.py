"""Cross-entropy over the 256k-token decoder without the fp32 (labels, vocab) tensors.

`F.cross_entropy(decoder(h).float(), t)` holds bf16 logits, their fp32 copy, the fp32 log-softmax
saved for backward and an fp32 gradient at once: about 30 GB for `base` at 32k tokens and a 30%
mask. Here the logits go into one (labels, vocab) buffer in the compute dtype, a chunk of rows at
a time; the log-softmax of a chunk is taken in fp32 and the chunk is overwritten in place with its
gradient `softmax - onehot`. Backward is then two matmuls over that buffer, the same three
matmuls and the same roundings as the unfused path under autocast, so nothing is recomputed.
"""
from __future__ import annotations

import torch


def _compute_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype autocast would give the decoder matmul, or the weight's own outside autocast."""
    device = weight.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, target: torch.Tensor,
                chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = _compute_dtype(weight)
        with torch.autocast(weight.device.type, enabled=False):
            h, w, b = hidden.to(dtype), weight.to(dtype), bias.to(dtype)
            rows = h.shape[0]
            buf = torch.empty(rows, w.shape[0], dtype=dtype, device=h.device)
            want_grad = any(ctx.needs_input_grad[:3])
            loss = torch.zeros((), dtype=torch.float32, device=h.device)
            grad_bias = torch.zeros(w.shape[0], dtype=torch.float32, device=h.device) if ctx.needs_input_grad[2] else None
            predictions = torch.empty(rows, dtype=torch.long, device=h.device)
            for start in range(0, rows, chunk_rows):
                part = slice(start, min(start + chunk_rows, rows))
                logits = buf[part]
                torch.addmm(b, h[part], w.t(), out=logits)
                predictions[part] = logits.argmax(-1)
                logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)
                t = target[part].unsqueeze(1)
                loss -= logp.gather(1, t).sum()
                if want_grad:
                    grad = logp.exp_()
                    grad.scatter_add_(1, t, torch.full_like(t, -1.0, dtype=grad.dtype))
                    grad.div_(rows)
                    if grad_bias is not None:
                        grad_bias += grad.sum(0)
                    logits.copy_(grad)
                del logp
        if want_grad:
            ctx.save_for_backward(buf, h, w, grad_bias)
            ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(predictions)
        return loss / rows, predictions

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_predictions: torch.Tensor | None):
        grad_logits, h, w, grad_bias = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        grad_hidden = grad_weight = grad_b = None
        with torch.autocast(grad_logits.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                grad_hidden = (grad_logits @ w).float().mul_(grad_loss).to(hidden_dtype)
            if ctx.needs_input_grad[1]:
                grad_weight = (grad_logits.t() @ h).to(torch.float32).mul_(grad_loss).to(weight_dtype)
        if grad_bias is not None:
            grad_b = (grad_bias * grad_loss).to(weight_dtype)
        return grad_hidden, grad_weight, grad_b, None, None


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, target: torch.Tensor,
                          chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of `hidden @ weight.T + bias` against `target`, and each row's argmax.

    `hidden` is (rows, hidden) of labelled tokens only; every target is a valid class. Peak memory
    beyond the inputs: one (rows, vocab) buffer in the compute dtype plus `chunk_rows` fp32 rows.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}: must be >= 1")
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0, torch.empty(0, dtype=torch.long, device=hidden.device)
    return _ChunkedCrossEntropy.apply(hidden, weight, bias, target, chunk_rows)
