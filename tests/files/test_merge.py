"""python -m mmbert_pl.merge: hand-computed cases, TIES against a plain implementation, the CLI and its HF export."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbert_pl.merge import exponential_weights, ties, weighted_average
from mmbert_pl.model import MMBertForMaskedLM, named_config
from mmbert_pl.files.model_files import read_state, write_model
from tests.random_weights import randomise_every_parameter
from tests.in_process import command


def test_weighted_average_and_exponential_weights_by_hand() -> None:
    a, b = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, 6.0])}
    assert torch.equal(weighted_average([a, b], [1, 3])["w"], torch.tensor([2.5, 5.0]))
    assert exponential_weights(3, 0.5) == [0.25, 0.5, 1.0]
    assert exponential_weights(3, 0.5, steps=[1000, 3000, 4000], step_unit=1000) == [0.125, 0.5, 1.0]
    with pytest.raises(ValueError, match="global step"):
        exponential_weights(2, 0.5, steps=[None, 10])
    with pytest.raises(ValueError, match="alpha"):
        exponential_weights(2, 1.5)


def test_ties_by_hand() -> None:
    base = {"w": torch.zeros(4)}
    t1, t2 = {"w": torch.tensor([3.0, -1.0, 0.5, -2.0])}, {"w": torch.tensor([-1.0, -2.0, 1.0, 4.0])}
    # top-2 by magnitude: [3, 0, 0, -2] and [0, -2, 0, 4]; elected signs + - + +; disjoint means 3, -2, 0, 4
    assert torch.equal(ties(base, [t1, t2], density=0.5, trim="tensor")["w"], torch.tensor([3.0, -2.0, 0.0, 4.0]))
    assert torch.equal(ties(base, [t1, t2], density=0.5, lam=0.5, trim="tensor")["w"], torch.tensor([1.5, -1.0, 0.0, 2.0]))
    # weights scale the deltas (MergeKit): entry 0 sums to 1*3 + 3*(-1) = 0 and elects +; entry 1 is (-1 - 6) / 4
    assert torch.allclose(ties(base, [t1, t2], density=1.0, weights=[1, 3])["w"], torch.tensor([3.0, -1.75, 0.875, 4.0]))


def plain_ties(base: dict, models: list[dict], density: float, lam: float, per_tensor: bool) -> dict:
    """TIES written out entry by entry with numpy, as the paper's steps read."""
    keys = list(base)
    flat_base = np.concatenate([base[k].numpy().ravel() for k in keys]).astype(np.float64)
    sizes = [base[k].numel() for k in keys]
    trimmed = []
    for m in models:
        tau = np.concatenate([m[k].numpy().ravel() for k in keys]).astype(np.float64) - flat_base
        kept = np.zeros_like(tau)
        spans = np.split(np.arange(tau.size), np.cumsum(sizes)[:-1]) if per_tensor else [np.arange(tau.size)]
        for span in spans:
            k = int(density * span.size)
            order = sorted(span, key=lambda i: -abs(tau[i]))[:k]
            kept[order] = tau[order]
        trimmed.append(kept)
    out = flat_base.copy()
    for i in range(flat_base.size):
        vals = [t[i] for t in trimmed]
        sign = 1.0 if sum(vals) >= 0 else -1.0
        agree = [v for v in vals if v != 0 and np.sign(v) == sign]
        out[i] += lam * (sum(agree) / len(agree) if agree else 0.0)
    parts = np.split(out, np.cumsum(sizes)[:-1])
    return {k: torch.from_numpy(p.reshape(base[k].shape)).float() for k, p in zip(keys, parts)}


@pytest.mark.parametrize("per_tensor", [False, True])
def test_ties_equals_a_plain_implementation(per_tensor: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    shapes = {"a": (7, 5), "b": (13,), "c": (3, 4, 2)}
    base = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    models = [{k: v + torch.randn(v.shape, generator=gen) for k, v in base.items()} for _ in range(3)]
    got = ties(base, models, density=0.3, lam=0.8, trim="tensor" if per_tensor else "global")
    want = plain_ties(base, models, 0.3, 0.8, per_tensor)
    for k in shapes:
        assert torch.allclose(got[k], want[k], atol=1e-5), k


def test_merging_identical_models_returns_that_model() -> None:
    torch.manual_seed(1)
    state = MMBertForMaskedLM(named_config("tiny")).state_dict()
    base = MMBertForMaskedLM(named_config("tiny")).state_dict()
    for merged in (weighted_average([state, state, state], [1, 2, 3]),
                   weighted_average([state] * 3, exponential_weights(3, 0.3)),
                   ties(base, [state, state], density=1.0, lam=1.0)):
        for k, v in state.items():
            assert torch.allclose(merged[k], v, atol=1e-6), k


def _cli(*args: str) -> subprocess.CompletedProcess:
    return command("mmbert_pl.merge", list(args))


def test_merge_cli_writes_a_checkpoint_and_an_hf_export_that_loads(tmp_path: Path, tokenizer_model: Path) -> None:
    from transformers import AutoModelForMaskedLM

    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = randomise_every_parameter(MMBertForMaskedLM(named_config("tiny")), seed)
        ckpt, hf = write_model(model, tmp_path / f"m{seed}", tokenizer_model, {})
        paths.append(str(ckpt) if seed else str(hf))           # inputs of both kinds
    out = tmp_path / "merged"
    result = _cli("ties", "--base", paths[0], "--models", *paths[1:], "--density", "0.5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    _, states, _ = zip(*(read_state(p) for p in paths))
    want = ties(states[0], list(states[1:]), density=0.5)
    _, got, _ = read_state(out / "model.ckpt")
    assert all(torch.equal(got[k], want[k]) for k in want)

    ours = MMBertForMaskedLM(named_config("tiny"), attn_backend="sdpa")
    ours.load_state_dict(got)
    hf = AutoModelForMaskedLM.from_pretrained(out / "hf").eval()
    ids = torch.randint(5, 4096, (2, 40))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.allclose(hf(input_ids=ids, attention_mask=mask).logits, ours.eval().forward_padded(ids, mask), atol=1e-4)
    assert (out / "hf" / "tokenizer.model").exists()

    avg = _cli("exponential", "--models", *paths, "--alpha", "0.5", "--out", str(tmp_path / "ema"))
    assert avg.returncode == 0, avg.stderr
    _, ema, _ = read_state(tmp_path / "ema" / "model.ckpt")
    assert torch.allclose(ema["head.dense.weight"], weighted_average(list(states), [0.25, 0.5, 1.0])["head.dense.weight"])


def test_merge_cli_refuses_models_of_different_shapes(tmp_path: Path) -> None:
    a, _ = write_model(MMBertForMaskedLM(named_config("tiny")), tmp_path / "a", None, {})
    b, _ = write_model(MMBertForMaskedLM(named_config("tiny", vocab_size=2048)), tmp_path / "b", None, {})
    result = _cli("average", "--models", str(a), str(b), "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and "vocab_size=4096" in result.stderr and "vocab_size=2048" in result.stderr
    assert not (tmp_path / "out").exists()
    missing = _cli("average", "--models", str(a), str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "out"))
    assert missing.returncode != 0 and "nope.ckpt does not exist" in missing.stderr
