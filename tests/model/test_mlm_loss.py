"""The chunked decoder loss equals plain cross-entropy, gradients included, at any chunk size."""
import copy

import pytest
import torch
import torch.nn.functional as F

from mmbert_pl.model import MMBertForMaskedLM, named_config
from mmbert_pl.model.documents import cu_seqlens_from_lengths
from mmbert_pl.model.mlm_loss import chunked_cross_entropy


def reference_loss(model: MMBertForMaskedLM, ids: torch.Tensor, cu: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The unfused path: full fp32 logits of the labelled tokens, then F.cross_entropy."""
    keep = labels != -100
    hidden = model.model(ids, cu, int((cu[1:] - cu[:-1]).max()))
    return F.cross_entropy(model.decoder(model.head(hidden[keep])).float(), labels[keep])


def grads(model: MMBertForMaskedLM) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 4096, (260,), generator=gen)
    labels = torch.where(torch.rand(260, generator=gen) < 0.3, ids, -100)
    return ids, cu_seqlens_from_lengths(torch.tensor([60, 200])), labels


@pytest.mark.parametrize("chunk_rows", [1, 7, 4096])
def test_loss_and_every_gradient_equal_the_unfused_path(batch, chunk_rows: int) -> None:
    ids, cu, labels = batch
    torch.manual_seed(0)
    model = MMBertForMaskedLM(named_config("tiny"), attn_backend="sdpa", loss_chunk_rows=chunk_rows).eval()
    expected = reference_loss(model, ids, cu, labels)
    (expected * 0.25).backward()
    want = grads(model)
    model.zero_grad()
    out = model(ids, cu, 200, labels=labels)
    (out.loss * 0.25).backward()
    got = grads(model)
    assert out.num_labels == int((labels != -100).sum()) > 50
    assert torch.allclose(out.loss, expected, rtol=1e-6, atol=1e-6)
    for name, g in want.items():
        assert torch.allclose(got[name], g, rtol=1e-4, atol=1e-8), name      # decoder.weight is the tied embedding
    assert got["decoder.bias"].abs().sum() > 0 and got["model.embeddings.tok_embeddings.weight"].abs().sum() > 0
    assert out.predictions.shape == (out.num_labels,)                  # eval mode: argmax for accuracy
    assert model.train()(ids, cu, 200, labels=labels).predictions is None  # training skips that pass


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])])
def test_bf16_autocast_matches_the_unfused_path_to_bf16_rounding(device: str) -> None:
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(300, 64, generator=gen).to(device).requires_grad_()
    weight = (torch.randn(5000, 64, generator=gen) * 0.1).to(device).requires_grad_()
    bias = (torch.randn(5000, generator=gen) * 0.1).to(device).requires_grad_()
    target = torch.randint(0, 5000, (300,), generator=gen).to(device)
    results = []
    for fused in (False, True):
        with torch.autocast(device, dtype=torch.bfloat16):
            if fused:
                loss, predictions = chunked_cross_entropy(hidden, weight, bias, target, 64)
            else:
                logits = F.linear(hidden, weight, bias)
                loss, predictions = F.cross_entropy(logits.float(), target), logits.argmax(-1)
        loss.backward()
        results.append((loss.detach(), predictions, hidden.grad, weight.grad, bias.grad))
        hidden.grad = weight.grad = bias.grad = None
    (loss0, pred0, *grads0), (loss1, pred1, *grads1) = results
    assert loss1.dtype == torch.float32 and torch.allclose(loss1, loss0, rtol=1e-5)
    assert torch.equal(pred1, pred0)
    for g0, g1 in zip(grads0, grads1):
        assert g1.dtype == torch.float32
        assert (g1 - g0).norm() <= 2**-7 * g0.norm()


def test_no_grad_and_empty_labels_and_bad_chunk() -> None:
    hidden, weight, bias = torch.randn(5, 8), torch.randn(11, 8), torch.randn(11)
    target = torch.tensor([0, 3, 10, 10, 2])
    with torch.no_grad():
        loss, predictions = chunked_cross_entropy(hidden, weight, bias, target, 2)
    assert torch.allclose(loss, F.cross_entropy(F.linear(hidden, weight, bias), target))
    assert torch.equal(predictions, F.linear(hidden, weight, bias).argmax(-1))
    assert chunked_cross_entropy(hidden, weight, bias, target, 2, predict=False)[1] is None
    h = hidden[:0].requires_grad_()
    loss, predictions = chunked_cross_entropy(h, weight, bias, target[:0], 2)
    loss.backward()
    assert loss.item() == 0.0 and predictions.numel() == 0 and h.grad.shape == (0, 8)
    with pytest.raises(ValueError, match="chunk_rows=0"):
        chunked_cross_entropy(hidden, weight, bias, target, 0)


def test_fp16_autocast_keeps_small_gradients_until_the_loss_scale_is_known() -> None:
    """Under fp16 (with a GradScaler's 2**16) a gradient of about 1/(rows * vocab) must not flush to zero.

    Measured: 3.4e-4 relative error; kept in fp16 before scaling, the weight gradient is off by 1.9e-2."""
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(8192, 32, generator=gen, requires_grad=True)
    weight = (torch.randn(3000, 32, generator=gen) * 0.05).requires_grad_()
    bias = torch.zeros(3000, requires_grad=True)
    target = torch.randint(0, 3000, (8192,), generator=gen)
    F.cross_entropy(F.linear(hidden, weight, bias), target).backward()
    exact = [t.grad.clone() for t in (hidden, weight, bias)]
    hidden.grad = weight.grad = bias.grad = None
    with torch.autocast("cpu", dtype=torch.float16):
        loss, _ = chunked_cross_entropy(hidden, weight, bias, target, 512)
    (loss * 2.0**16).backward()
    for g, want in zip((hidden.grad, weight.grad, bias.grad), exact):
        assert ((g / 2.0**16) - want).norm() <= 2**-8 * want.norm()


def test_compiled_softmax_gradient_pass_equals_eager() -> None:
    """`model.compile=true` runs each chunk's softmax and gradient through torch.compile's fused form."""
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(300, 32, generator=gen)
    weight, bias = torch.randn(5000, 32, generator=gen) * 0.1, torch.randn(5000, generator=gen) * 0.1
    target = torch.randint(0, 5000, (300,), generator=gen)
    results = []
    for compiled in (False, True):
        h, w, b = (t.clone().requires_grad_() for t in (hidden, weight, bias))
        loss, _ = chunked_cross_entropy(h, w, b, target, 128, predict=False, compiled=compiled)   # 128, 128, 44 rows
        loss.backward()
        results.append((loss.detach(), h.grad, w.grad, b.grad))
    for eager, fused in zip(*results):
        assert torch.allclose(eager, fused, rtol=1e-5, atol=1e-7)


def test_compiled_model_equals_eager(batch) -> None:
    """`model.compile=true` (compile_blocks: the layers' dense parts and the loss pass) changes no number
    beyond float rounding: the same loss and gradients as the eager model."""
    ids, cu, labels = batch
    torch.manual_seed(0)
    eager = MMBertForMaskedLM(named_config("tiny", attn_out_dropout=0.0), attn_backend="sdpa", loss_chunk_rows=64)
    compiled = copy.deepcopy(eager)
    compiled.compile_blocks()
    for model in (eager, compiled):
        model(ids, cu, 200, labels=labels).loss.backward()
    assert compiled.compiled_loss and not eager.compiled_loss
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name
