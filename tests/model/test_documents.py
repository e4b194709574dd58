"""Packed documents are independent: no attention across boundaries, RoPE restarts per document."""
import torch

from mmbert_pl.model import MMBertForMaskedLM, named_config
from mmbert_pl.model.documents import cu_seqlens_from_lengths, unpad


def tiny_model() -> MMBertForMaskedLM:
    torch.manual_seed(0)
    return MMBertForMaskedLM(named_config("tiny"), attn_backend="sdpa").eval()


def run(model: MMBertForMaskedLM, docs: list[torch.Tensor]) -> list[torch.Tensor]:
    lengths = torch.tensor([len(d) for d in docs])
    hidden = model.model(torch.cat(docs), cu_seqlens_from_lengths(lengths), int(lengths.max()))
    return list(hidden.split(lengths.tolist()))


@torch.no_grad()
def test_documents_do_not_see_each_other_and_positions_restart() -> None:
    model = tiny_model()
    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randint(5, 4096, (n,), generator=gen) for n in (150, 90, 40))
    alone = run(model, [b])[0]
    # The same document after another one, or after a different one, gives the same states.
    assert torch.allclose(run(model, [a, b])[1], alone, atol=1e-5)
    assert torch.allclose(run(model, [c, b, a])[1], alone, atol=1e-5)


@torch.no_grad()
def test_padded_entry_point_equals_flat() -> None:
    model = tiny_model()
    ids = torch.randint(5, 4096, (3, 200))
    mask = torch.zeros(3, 200, dtype=torch.long)
    for row, n in enumerate((200, 130, 7)):
        mask[row, :n] = 1
    logits = model.forward_padded(ids * mask, mask)
    u = unpad(ids * mask, mask)
    flat = model(u.input_ids, u.cu_seqlens, u.max_seqlen).logits
    assert torch.equal(logits[mask.bool()], flat)
    assert torch.all(logits[~mask.bool()] == 0)


@torch.no_grad()
def test_sparse_prediction_equals_dense_at_labelled_positions() -> None:
    model = tiny_model()
    ids = torch.randint(5, 4096, (300,))
    cu = cu_seqlens_from_lengths(torch.tensor([100, 200]))
    labels = torch.full((300,), -100)
    picked = torch.tensor([0, 5, 99, 100, 250, 299])
    labels[picked] = ids[picked]
    sparse = model(ids, cu, 200, labels=labels)
    dense = model(ids, cu, 200).logits
    assert sparse.num_labels == 6 and sparse.logits is None
    assert torch.equal(sparse.predictions, dense[picked].argmax(-1))
    expected = torch.nn.functional.cross_entropy(dense[picked], ids[picked])
    assert torch.allclose(sparse.loss, expected, atol=1e-5)
