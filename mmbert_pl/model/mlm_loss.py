"""Cross-entropy over the 256k-token decoder without the fp32 (labels, vocab) tensors.

`F.cross_entropy(decoder(h).float(), t)` holds bf16 logits, their fp32 copy, the fp32 log-softmax
saved for backward and an fp32 gradient at once: about 30 GB for `base` at 32k tokens and a 30%
mask. Here the decoder runs a chunk of rows at a time; each chunk's log-softmax is taken in fp32
and turned in place into its gradient `softmax - onehot`, which is kept in one (labels, vocab)
buffer in the compute dtype. Backward is then two matmuls over that buffer: the same three
matmuls and the same roundings as the unfused path under autocast, and nothing is recomputed.
The 1/rows of the mean is applied in backward, which saves a pass over the buffer.
"""
from __future__ import annotations

import contextlib
import functools

import torch


def _compute_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype autocast would give the decoder matmul, or the weight's own outside autocast."""
    device = weight.device.type
    autocast = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
    return torch.get_autocast_dtype(device) if autocast else weight.dtype


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off, on devices that have it (the meta device, where tests trace the step, has none)."""
    available = torch.amp.is_autocast_available(device.type)
    return torch.autocast(device.type, enabled=False) if available else contextlib.nullcontext()


def _chunk_loss(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, target: torch.Tensor, grad_out: torch.Tensor | None,
                predictions_out: torch.Tensor | None, fused: bool) -> torch.Tensor:
    """Sum of -log p[target] over a chunk of rows; softmax - onehot written into `grad_out`, the argmax
    into `predictions_out`, where given.

    Eager (`fused=False`) frees the logits once their fp32 log-softmax exists and works on that in
    place, so a chunk holds at most one (rows, vocab) fp32 temporary. `fused=True` is the form
    torch.compile turns into one reduction and one pointwise pass over the logits."""
    logits = torch.addmm(b, h, w.t())
    if predictions_out is not None:
        predictions_out.copy_(logits.argmax(-1))
    logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)
    del logits
    t = target.unsqueeze(1)
    loss = -logp.gather(1, t).sum()
    if grad_out is None:
        return loss
    if fused:
        p = logp.exp()
        grad_out.copy_(torch.where(torch.arange(p.shape[1], device=p.device)[None, :] == t, p - 1.0, p))
    else:
        grad = logp.exp_()
        grad.scatter_add_(1, t, torch.full_like(t, -1.0, dtype=grad.dtype))
        grad_out.copy_(grad)
    return loss


@functools.cache
def _compiled_chunk_loss():
    """Compiled once per process; rows are dynamic (the last chunk of every step is shorter)."""
    return torch.compile(functools.partial(_chunk_loss, fused=True), dynamic=True)


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, target: torch.Tensor,
                chunk_rows: int, predict: bool, compiled: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        dtype = _compute_dtype(weight)
        with _no_autocast(weight.device):
            h, w, b = hidden.to(dtype), weight.to(dtype), bias.to(dtype)
            rows, vocab = h.shape[0], w.shape[0]
            # Kept unscaled (softmax - onehot, no 1/rows); fp16 keeps it in fp32 until backward knows the
            # loss scale, as the unfused path does, so small probabilities do not flush to zero.
            grads = torch.empty(rows, vocab, dtype=torch.float32 if dtype == torch.float16 else dtype,
                                device=h.device) if any(ctx.needs_input_grad[:3]) else None
            loss = torch.zeros((), dtype=torch.float32, device=h.device)
            predictions = torch.empty(rows, dtype=torch.long, device=h.device) if predict else None
            chunk_loss = _compiled_chunk_loss() if compiled else functools.partial(_chunk_loss, fused=False)
            for start in range(0, rows, chunk_rows):
                part = slice(start, min(start + chunk_rows, rows))
                loss += chunk_loss(h[part], w, b, target[part], None if grads is None else grads[part],
                                   None if predictions is None else predictions[part])
        if grads is not None:
            ctx.save_for_backward(grads, h, w)
            ctx.rows, ctx.dtypes = rows, (hidden.dtype, weight.dtype)
        if predictions is not None:
            ctx.mark_non_differentiable(predictions)
        return loss / rows, predictions

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_predictions: torch.Tensor | None):
        grad_logits, h, w = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        scale = grad_loss.float() / ctx.rows
        if grad_logits.dtype != w.dtype:                  # fp16: scale first, then round
            grad_logits, scale = (grad_logits * scale).to(w.dtype), torch.ones_like(scale)
        grad_hidden = grad_weight = grad_bias = None
        with _no_autocast(grad_logits.device):
            if ctx.needs_input_grad[0]:
                grad_hidden = (grad_logits @ w).float().mul_(scale).to(hidden_dtype)
            if ctx.needs_input_grad[1]:
                grad_weight = (grad_logits.t() @ h).float().mul_(scale).to(weight_dtype)
            if ctx.needs_input_grad[2]:
                grad_bias = grad_logits.sum(0).float().mul_(scale).to(weight_dtype)
        return grad_hidden, grad_weight, grad_bias, None, None, None, None


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, target: torch.Tensor,
                          chunk_rows: int, predict: bool = True, compiled: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean cross-entropy of `hidden @ weight.T + bias` against `target`, and each row's argmax when `predict`.
    `compiled`: each chunk's softmax and gradient in torch.compile's fused passes (`model.compile=true`).

    `hidden` is (rows, hidden) of labelled tokens only; every target is a valid class. Peak memory
    beyond the inputs: a (rows, vocab) gradient buffer in the compute dtype (fp32 under fp16; none
    without grad) plus `chunk_rows` rows of logits and their fp32 log-softmax.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}: must be >= 1")
    if hidden.shape[0] == 0:
        empty = torch.empty(0, dtype=torch.long, device=hidden.device) if predict else None
        return hidden.sum() * 0.0, empty
    return _ChunkedCrossEntropy.apply(hidden, weight, bias, target, chunk_rows, predict, compiled)
