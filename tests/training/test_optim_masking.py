"""StableAdamW against the formula of recipe §4; masking statistics on >= 100k tokens."""
import math

import pytest
import torch

from mmbert_pl.training.masking import mlm_mask, row_seeds
from mmbert_pl.model import MMBertForMaskedLM, named_config
from mmbert_pl.training.optim import StableAdamW, parameter_groups


def reference_step(theta, m, v, g, t, lr, max_lr, wd, b1=0.9, b2=0.95, eps=1e-8):
    bb1 = (b1**t - b1) / (b1**t - 1)
    bb2 = (b2**t - b2) / (b2**t - 1)
    m = bb1 * m + (1 - bb1) * g
    v = bb2 * v + (1 - bb2) * g * g
    r = math.sqrt(float((g * g / torch.clamp(v, min=eps * eps)).mean()))
    eta = lr / max(1.0, r)
    theta = theta * (1 - eta / max_lr * wd)
    theta = theta - eta * m / (v.sqrt() + eps)
    return theta, m, v


@pytest.mark.parametrize("compiled", [False, True])
def test_stable_adamw_matches_the_formula(compiled: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(8, 5, generator=gen, dtype=torch.float64))
    opt = StableAdamW([p], lr=8e-4, weight_decay=8e-5, compiled=compiled)
    theta, m, v = p.detach().clone(), torch.zeros_like(p), torch.zeros_like(p)
    for t, lr in enumerate([8e-4, 6e-4, 4e-4, 1e-4, 5e-5], start=1):
        g = torch.randn(8, 5, generator=gen, dtype=torch.float64) * (10 if t == 2 else 1)   # a spike: clipping acts
        for group in opt.param_groups:
            group["lr"] = lr
        p.grad = g.clone()
        opt.step()
        theta, m, v = reference_step(theta, m, v, g, t, lr, 8e-4, 8e-5)
        assert torch.allclose(p.detach(), theta, atol=1e-12, rtol=1e-10)


def test_compiled_update_equals_the_multi_tensor_one_and_compiles_once() -> None:
    """Two groups (decay and none) of a model's tensors, the LR changing every step as the schedule does."""
    from torch._dynamo.utils import counters

    models = [MMBertForMaskedLM(named_config("tiny"), attn_backend="sdpa") for _ in range(2)]   # the CLI test reuses its graphs
    models[1].load_state_dict(models[0].state_dict())
    opts = [StableAdamW(parameter_groups(m, 8e-5), compiled=c) for m, c in zip(models, (False, True))]
    gen, before = torch.Generator().manual_seed(1), counters["stats"]["unique_graphs"]
    for step, lr in enumerate([8e-4, 6e-4, 3e-4, 1e-4]):
        grads = [torch.randn(p.shape, generator=gen) * (20 if step == 1 else 1) for p in models[0].parameters()]
        for model, opt in zip(models, opts):
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
        if step == 0:
            graphs = counters["stats"]["unique_graphs"]
    assert graphs > before and counters["stats"]["unique_graphs"] == graphs     # compiled, and never again
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name
    states = [opt.state_dict()["state"] for opt in opts]
    assert states[0].keys() == states[1].keys()
    assert all(torch.allclose(states[0][k]["exp_avg_sq"], states[1][k]["exp_avg_sq"], rtol=1e-5, atol=1e-12) for k in states[0])


@pytest.mark.parametrize("compiled", [False, True])
def test_clipping_is_exact_on_a_tensor_as_large_as_base_embedding(compiled: bool) -> None:
    """The clip divisor sums g²/v over 100M elements (base's embedding has 197M). Equal elements make
    the reference plain arithmetic; a 10x gradient spike at step 2 makes the clip act."""
    n, g1 = 100_000_000, 1e-3
    p = torch.nn.Parameter(torch.zeros(n))
    opt = StableAdamW([p], lr=8e-4, weight_decay=0.0, compiled=compiled)
    theta, m, v = torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    for t, g in enumerate([g1, 10 * g1], start=1):
        p.grad = torch.full((n,), g)
        opt.step()
        theta, m, v = reference_step(theta, m, v, torch.full((1,), g, dtype=torch.float64), t, 8e-4, 8e-4, 0.0)
    lowest, highest = p.detach().aminmax()
    assert torch.allclose(lowest.double(), theta, rtol=1e-5) and torch.allclose(highest.double(), theta, rtol=1e-5)


def test_no_decay_on_norms_and_biases() -> None:
    model = MMBertForMaskedLM(named_config("tiny"), attn_backend="sdpa")
    decay, no_decay = parameter_groups(model, 8e-5)
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_parameters()
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 8e-5


@pytest.mark.parametrize("ratio", [0.3, 0.05])
def test_masking_statistics(ratio: float) -> None:
    gen = torch.Generator().manual_seed(row_seeds(0, 10, [0])[0])
    ids = torch.randint(5, 4096, (200_000,), generator=gen)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[-20_000:] = False                      # padding at the tail
    pool = torch.arange(5, 4096)
    inputs, labels = mlm_mask(ids, ratio, 4, pool, gen, maskable)
    chosen = labels != -100
    assert not chosen[-20_000:].any() and torch.equal(inputs[-20_000:], ids[-20_000:])
    assert abs(chosen[:-20_000].float().mean().item() - ratio) <= 0.01
    n = chosen.sum().item()
    masked = (inputs == 4) & chosen
    kept = (inputs == ids) & chosen
    replaced = chosen & ~masked & ~kept
    assert abs(masked.sum().item() / n - 0.8) <= 0.01
    assert abs(kept.sum().item() / n - 0.1) <= 0.01 + 1 / 4091    # a random pick may equal the original
    assert abs(replaced.sum().item() / n - 0.1) <= 0.01
    assert inputs[replaced].min() >= 5                              # never a special id
    assert torch.equal(labels[chosen], ids[chosen])


def test_masking_is_reproducible_from_the_seed() -> None:
    ids = torch.randint(5, 4096, (5000,))
    pool = torch.arange(5, 4096)
    a = mlm_mask(ids, 0.3, 4, pool, torch.Generator().manual_seed(row_seeds(1, 7, [2])[0]))
    b = mlm_mask(ids, 0.3, 4, pool, torch.Generator().manual_seed(row_seeds(1, 7, [2])[0]))
    c = mlm_mask(ids, 0.3, 4, pool, torch.Generator().manual_seed(row_seeds(1, 8, [2])[0]))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    with pytest.raises(ValueError, match="mask ratio"):
        mlm_mask(ids, 1.0, 4, pool, torch.Generator())


def test_framing_and_special_tokens_are_never_masked_or_drawn(shard_dir, tokenizer_model) -> None:
    """Real packed rows of the sample: every document is framed [bos] ... [eos]. At a 90% ratio over many
    seeds, no bos/eos/pad/unk/mask position is chosen or changed, and no random replacement is a special id."""
    from streaming import StreamingDataset

    from data_prep.tokenizer import load_tokenizer, ordinary_ids
    from mmbert_pl.data.rows import collate_rows, flatten_rows
    from mmbert_pl.training.masking import ordinary_lookup
    from mmbert_pl.training.step_inputs import step_inputs

    sp = load_tokenizer(tokenizer_model).sp
    special = torch.tensor([sp.piece_to_id(p) for p in ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")])
    pool = torch.tensor(ordinary_ids(tokenizer_model))
    assert not torch.isin(special, pool).any()
    ds = StreamingDataset(local=str(shard_dir / "eng_Latn"), split="train", shuffle=False, batch_size=4)
    batch = collate_rows([ds[i] for i in range(4)])
    ids, _, _ = flatten_rows(batch["input_ids"], batch["cu_seqlens"])
    framing = torch.isin(ids, special)
    assert framing.sum() >= 2                                   # a bos and an eos at least
    ordinary = ordinary_lookup(pool, sp.get_piece_size())
    for seed in range(20):
        x = step_inputs(batch, 0.9, sp.piece_to_id("<mask>"), pool, row_seeds(seed, 0, range(4)), torch.device("cpu"), ordinary)
        assert not framing[x.positions].any()
        assert torch.equal(x.input_ids[framing], ids[framing])
        changed = (x.input_ids != ids) & (x.input_ids != sp.piece_to_id("<mask>"))
        assert changed.any() and not torch.isin(x.input_ids[changed], special).any()
        assert x.positions.numel() > 0.8 * (~framing).sum()


def test_a_row_is_masked_and_dropped_out_the_same_in_any_micro_batch(shard_dir) -> None:
    """Masks and dropout keys per row (seed, step, sample id): 8 rows as one micro-batch or as two of 4, in either
    order, give each row the same inputs, labels and keys; another step gives other masks."""
    from streaming import StreamingDataset

    from mmbert_pl.data.rows import collate_rows
    from mmbert_pl.model.keyed_dropout import keyed_dropout
    from mmbert_pl.training.masking import ordinary_lookup
    from mmbert_pl.training.step_inputs import step_inputs

    ds = StreamingDataset(local=str(shard_dir / "eng_Latn"), split="train", shuffle=False, batch_size=8)
    samples = [{**ds[i], "sample_id": 100 + i} for i in range(8)]
    pool = torch.arange(5, 4096)
    ordinary = ordinary_lookup(pool, 4096)

    def per_row(order: list[int], micro: int, step: int = 3) -> dict[int, tuple]:
        out = {}
        for start in range(0, len(order), micro):
            batch = collate_rows([samples[i] for i in order[start:start + micro]])
            x = step_inputs(batch, 0.3, 4, pool, row_seeds(7, step, batch["sample_ids"].tolist()), torch.device("cpu"), ordinary)
            labels = torch.full_like(x.input_ids, -100).index_put_((x.positions,), x.targets)
            lengths = batch["cu_seqlens"][:, -1].tolist()
            for sid, a, b in zip(batch["sample_ids"].tolist(), [0, *torch.tensor(lengths).cumsum(0).tolist()], torch.tensor(lengths).cumsum(0).tolist()):
                out[sid] = (x.input_ids[a:b], labels[a:b], x.dropout_keys[a:b])
        return out

    whole, halves, reversed_ = per_row(list(range(8)), 8), per_row(list(range(8)), 4), per_row(list(range(7, -1, -1)), 4)
    for sid in whole:
        for other in (halves, reversed_):
            assert all(torch.equal(a, b) for a, b in zip(whole[sid], other[sid]))
    assert not torch.equal(whole[100][1], per_row(list(range(8)), 8, step=4)[100][1])
    hidden = torch.randn(len(whole[100][2]), 64)
    kept = keyed_dropout(hidden, whole[100][2], layer=1, p=0.1) != 0
    assert torch.equal(kept, keyed_dropout(hidden, halves[100][2], layer=1, p=0.1) != 0)
    assert abs(kept.float().mean().item() - 0.9) < 0.01                                  # drops 10%
    assert not torch.equal(kept, keyed_dropout(hidden, whole[100][2], layer=2, p=0.1) != 0)   # another mask per layer
