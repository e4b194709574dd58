"""The encoder's shape and init follow recipe §1 exactly."""
import math

import pytest
import torch

from mmbert_pl.model import MMBertForMaskedLM, named_config


@pytest.mark.parametrize("name,count", [("base", 307_786_240), ("small", 140_897_536)])
def test_parameter_counts_on_meta(name: str, count: int) -> None:
    with torch.device("meta"):
        model = MMBertForMaskedLM(named_config(name), attn_backend="sdpa")
    assert model.num_parameters() == count
    # The decoder is tied: no second vocab x hidden matrix.
    assert model.decoder.weight is model.model.embeddings.tok_embeddings.weight


def test_layer_pattern_and_biases() -> None:
    with torch.device("meta"):
        model = MMBertForMaskedLM(named_config("base"), attn_backend="sdpa")
    globals_ = [i for i, layer in enumerate(model.model.layers) if layer.attn.is_global]
    assert globals_ == [0, 3, 6, 9, 12, 15, 18, 21]
    assert isinstance(model.model.layers[0].attn_norm, torch.nn.Identity)
    assert all(isinstance(l.attn_norm, torch.nn.LayerNorm) for l in model.model.layers[1:])
    biases = [n for n, _ in model.named_parameters() if n.endswith("bias")]
    assert biases == ["decoder.bias"]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == 1e-5 and m.bias is None for m in norms)
    assert model.model.layers[1].mlp.Wi.weight.shape == (2 * 1152, 768)
    assert model.model.layers[1].attn.out_drop.p == 0.1


def test_full_megatron_init() -> None:
    torch.manual_seed(0)
    cfg = named_config("small", vocab_size=8192)
    model = MMBertForMaskedLM(cfg, attn_backend="sdpa")
    out_std = 0.02 / math.sqrt(2 * 22)
    checks = {
        "model.embeddings.tok_embeddings.weight": 0.02,
        "model.layers.3.attn.Wqkv.weight": 0.02,
        "model.layers.3.mlp.Wi.weight": 0.02,
        "head.dense.weight": 0.02,
        "model.layers.3.attn.Wo.weight": out_std,
        "model.layers.21.mlp.Wo.weight": out_std,
    }
    params = dict(model.named_parameters())
    # A normal truncated at +-2 sigma has std 0.8796 sigma.
    for name, std in checks.items():
        p = params[name]
        assert p.abs().max() <= 2 * std + 1e-9, name
        assert p.std().item() == pytest.approx(0.8796 * std, rel=0.03), name
    assert torch.all(params["model.final_norm.weight"] == 1)
    bound = 1 / math.sqrt(cfg.hidden_size)
    bias = params["decoder.bias"]
    assert bias.abs().max() <= bound and bias.std() > 0.5 * bound / math.sqrt(3)


def test_config_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        named_config("tiny", num_heads=5)
    with pytest.raises(ValueError, match="local_window"):
        named_config("tiny", local_window=31)
    with pytest.raises(ValueError, match="unknown model config"):
        named_config("huge")
