"""Every available attention backend equals a plain per-document reference, forward and backward."""
import pytest
import torch

from mmbert_pl.model.attention import flash_attn_available, make_backend, torch_varlen_attn

WINDOW = 32          # total window: |i-j| <= 16
HEADS, DIM = 4, 16


def reference(qkv: torch.Tensor, cu: torch.Tensor, local: bool) -> torch.Tensor:
    out = []
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        q, k, v = qkv[s:e].float().unbind(1)
        scores = torch.einsum("qhd,khd->hqk", q, k) / DIM**0.5
        if local:
            i = torch.arange(e - s, device=qkv.device)
            scores = scores.masked_fill((i[:, None] - i[None, :]).abs() > WINDOW // 2, float("-inf"))
        out.append(torch.einsum("hqk,khd->qhd", scores.softmax(-1), v.float()))
    return torch.cat(out)


def split(qkv: torch.Tensor) -> list[torch.Tensor]:
    """q, k, v as the encoder layer hands them to a backend: three contiguous (tokens, heads, dim) tensors."""
    return [t.contiguous() for t in qkv.unbind(1)]


NO_CUDA = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def backends() -> list:
    """Every backend case; those this machine cannot run show as skipped, with the reason. bf16 tolerances are
    what a correct kernel meets with room: 0.5% of the largest value measured on an H200 for out, dq, dk, dv
    (benchmarks/results/h200-2026-11-27/agreement.txt) and 0.6% for SDPA's bf16 gradients on the CPU."""
    no_flash = pytest.mark.skipif(not flash_attn_available(), reason="flash-attn is not installed")
    no_varlen = pytest.mark.skipif(not torch.cuda.is_available() or torch_varlen_attn() is None,
                                   reason="needs CUDA and torch's varlen attention")
    return [pytest.param("sdpa", "cpu", torch.float32, 1e-5, id="sdpa-cpu-fp32"),
            pytest.param("sdpa", "cuda", torch.bfloat16, 1.5e-2, id="sdpa-cuda-bf16", marks=NO_CUDA),
            pytest.param("flex", "cuda", torch.bfloat16, 1.5e-2, id="flex-cuda-bf16", marks=NO_CUDA),
            pytest.param("flash", "cuda", torch.bfloat16, 1.5e-2, id="flash-cuda-bf16", marks=[*NO_CUDA, no_flash]),
            pytest.param("varlen", "cuda", torch.bfloat16, 1.5e-2, id="varlen-cuda-bf16", marks=[pytest.mark.gpu, no_varlen])]


@pytest.mark.parametrize("name,device,dtype,tol", backends())
@pytest.mark.parametrize("local", [False, True])
def test_backend_matches_reference(name: str, device: str, dtype: torch.dtype, tol: float, local: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    lengths = [97, 1, 40, 200, 17, 33, 150]       # several documents longer than the window, one of length 1
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=device)
    total = int(cu[-1])
    qkv = torch.randn(total, 3, HEADS, DIM, generator=gen).to(device, dtype).requires_grad_()
    grad_out = torch.randn(total, HEADS, DIM, generator=gen).to(device, dtype)

    backend = make_backend(name, WINDOW)
    out = backend(*split(qkv), backend.plan(cu, max(lengths), total), local=local)
    (out.float() * grad_out.float()).sum().backward()
    got_grad, qkv.grad = qkv.grad.clone(), None

    ref = reference(qkv, cu, local)
    (ref * grad_out.float()).sum().backward()
    scale = ref.abs().max()
    assert (out.float() - ref).abs().max() <= tol * scale
    assert (got_grad.float() - qkv.grad.float()).abs().max() <= tol * qkv.grad.float().abs().max()


@pytest.mark.parametrize("local", [False, True])
def test_flex_forward_on_cpu(local: bool) -> None:
    """PyTorch has no flex backward on CPU: forward here, gradients in the CUDA case above."""
    gen = torch.Generator().manual_seed(2)
    lengths = [97, 1, 40, 200, 17]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    qkv = torch.randn(int(cu[-1]), 3, HEADS, DIM, generator=gen)
    backend = make_backend("flex", WINDOW)
    out = backend(*split(qkv), backend.plan(cu, max(lengths), int(cu[-1])), local=local)
    assert (out - reference(qkv, cu, local)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="sdpa"):
        backend(*split(qkv.requires_grad_()), backend.plan(cu, max(lengths), int(cu[-1])), local=local)


def test_flash_without_package_is_a_clear_error() -> None:
    if flash_attn_available():
        pytest.skip("flash-attn is installed")
    import importlib.util

    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ValueError, match="flash-attn"):
            make_backend("flash", WINDOW)
    with pytest.raises(ValueError, match="unknown attention backend"):
        make_backend("xformers", WINDOW)


def test_varlen_off_cuda_is_a_clear_error() -> None:
    if torch_varlen_attn() is None:
        with pytest.raises(ValueError, match="varlen_attn"):
            make_backend("varlen", WINDOW)
        return
    backend = make_backend("varlen", WINDOW)
    cu = torch.tensor([0, 5, 12], dtype=torch.int32)
    with pytest.raises(ValueError, match="CUDA only; use sdpa"):
        backend(*split(torch.randn(12, 3, HEADS, DIM)), backend.plan(cu, 7, 12), local=True)


@pytest.mark.parametrize("min_block", [16, 24, 64])
def test_sdpa_blockwise_local_attention_matches_reference(min_block: int) -> None:
    """Long documents take the blockwise path (block >= half window, ragged last block, padded rows)."""
    from mmbert_pl.model.attention import SDPABackend

    gen = torch.Generator().manual_seed(3)
    lengths = [700, 650, 5, 610, 333]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    total = int(cu[-1])
    qkv = torch.randn(total, 3, HEADS, DIM, generator=gen, dtype=torch.float64).requires_grad_()
    backend = SDPABackend(WINDOW, min_block=min_block)
    plan = backend.plan(cu, max(lengths), total)
    assert any(b.block for b in plan.buckets)
    out = backend(*split(qkv), plan, local=True)
    grad_out = torch.randn_like(out)
    (out * grad_out).sum().backward()
    got_grad, qkv.grad = qkv.grad.clone(), None
    ref = reference(qkv, cu, True).double()
    (ref * grad_out).sum().backward()
    assert (out - ref).abs().max() <= 1e-5   # the reference runs in float32
    assert (got_grad - qkv.grad).abs().max() <= 1e-5   # the reference runs in float32


def _autograd_nodes(root, stop: set) -> set[str]:
    """Names of the autograd nodes between `root` and the nodes in `stop` (exclusive)."""
    seen, names, todo = set(), set(), [root]
    while todo:
        node = todo.pop()
        if node is None or node in seen or node in stop:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo.extend(next_node for next_node, _ in node.next_functions)
    return names


def test_layer_hands_q_k_v_to_the_backend_without_packing_them() -> None:
    """Between the layer's projection and the attention output, no node unpacks or packs q, k, v: on CUDA
    that backward stack was an extra copy of the three gradients in every layer (README Performance)."""
    from mmbert_pl.model.attention import SDPABackend
    from mmbert_pl.model.config import named_config
    from mmbert_pl.model.documents import DocumentContext, position_ids_from_cu_seqlens
    from mmbert_pl.model.layers import EncoderLayer

    cfg = named_config("tiny")
    backend = SDPABackend(cfg.local_window)
    cu = torch.tensor([0, 40, 41, 100], dtype=torch.int32)
    for layer_id in (0, 1):
        layer = EncoderLayer(cfg, layer_id, backend)
        ctx = DocumentContext(position_ids=position_ids_from_cu_seqlens(cu, 100), plan=backend.plan(cu, 59, 100))
        q, k, v = layer.before_attention(torch.randn(100, cfg.hidden_size), *layer.attn.rope(ctx))
        assert all(t.shape == (100, cfg.num_heads, cfg.head_dim) for t in (q, k, v))
        out = backend(q, k, v, ctx.plan, local=not layer.attn.is_global)
        names = _autograd_nodes(out.grad_fn, {q.grad_fn, k.grad_fn, v.grad_fn})
        assert not {n for n in names if n.startswith(("Unbind", "Stack"))}, names
