"""Block masks built from block bounds are exactly the ones `create_block_mask` finds on the token grid."""
import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask

from mmbert_pl.model.flex_block_mask import document_block_masks

FIELDS = ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices",
          "q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices")


def layouts() -> list[list[int]]:
    gen = torch.Generator().manual_seed(0)
    random = [torch.randint(1, 400, (int(n),), generator=gen).tolist() for n in torch.randint(1, 30, (6,), generator=gen)]
    # Blocks filled by one document (full blocks), one-token documents, a ragged tail block, one long document.
    return random + [[128] * 6, [256, 1, 1, 127, 384], [1] * 40 + [300], [1000]]


@pytest.mark.parametrize("lengths", layouts())
@pytest.mark.parametrize("half", [3, 64, 200])
def test_equal_to_create_block_mask(lengths: list[int], half: int) -> None:
    doc = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    total = doc.numel()

    def same_doc(b, h, q, kv):
        return doc[q] == doc[kv]

    def same_doc_window(b, h, q, kv):
        return (doc[q] == doc[kv]) & ((q - kv).abs() <= half)

    ours = document_block_masks(doc, half)
    for mine, mask_mod in zip(ours, (same_doc, same_doc_window)):
        reference = create_block_mask(mask_mod, None, None, total, total, device="cpu")
        for field in FIELDS:
            assert torch.equal(getattr(mine, field), getattr(reference, field)), field
        q, kv = torch.arange(total)[:, None], torch.arange(total)[None, :]
        assert torch.equal(mine.mask_mod(0, 0, q, kv), mask_mod(0, 0, q, kv))
