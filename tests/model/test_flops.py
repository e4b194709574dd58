"""The FLOPs behind MFU: our count per token equals what PyTorch's FLOP counter sees in a real step."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from callbacks.token_budget import attention_pairs, train_flops_per_token
from mmbert_pl.model.config import named_config
from mmbert_pl.model.encoder import MMBertForMaskedLM


@pytest.mark.parametrize("half", [1, 4, 16])
def test_attention_pairs_count_every_scored_pair(half: int) -> None:
    lengths = torch.tensor([1, 3, half, half + 1, 2 * half, 2 * half + 1, 50])
    brute_global = brute_local = 0
    for n in lengths.tolist():
        i = torch.arange(n)
        brute_global += n * n
        brute_local += int(((i[:, None] - i[None, :]).abs() <= half).sum())
    assert attention_pairs(lengths, half) == (brute_global, brute_local)


def test_flops_per_token_match_the_counted_forward_and_backward() -> None:
    """Documents no longer than the half window, all of one length: every layer scores n² pairs with no
    padding, so the counter's matmul and attention FLOPs are exactly what the formula claims."""
    cfg = named_config("tiny", hidden_size=128, intermediate_size=192, num_heads=4, attn_out_dropout=0.0)
    model = MMBertForMaskedLM(cfg, attn_backend="sdpa")
    n, docs, labelled = 16, 8, 40                       # 128 tokens, 40 labelled (mask share 0.3125)
    lengths = torch.full((docs,), n)
    cu = torch.arange(docs + 1, dtype=torch.int32) * n
    ids = torch.randint(5, cfg.vocab_size, (docs * n,))
    positions = torch.randperm(docs * n)[:labelled].sort().values
    # SDPA's math path runs as matmuls the counter sees (it counts no fused CPU attention kernel).
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        model(ids, cu, n, labels=ids[positions], positions=positions).loss.backward()
    expected = train_flops_per_token(model, labelled / (docs * n), lengths) * docs * n
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.005)
    assert train_flops_per_token(model, 0.3, torch.tensor([4096])) > train_flops_per_token(model, 0.3, torch.tensor([64]))
