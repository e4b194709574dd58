"""Framing, splitting and best-fit packing keep every token and fill rows."""
import numpy as np
import pytest

from data_prep.packing import BestFitPacker, frame_and_split

BOS, EOS = 2, 1


def test_frame_and_split_drops_only_short_tails() -> None:
    pieces, lost = frame_and_split(list(range(10, 20)), BOS, EOS, row_length=16, min_tail=4)
    assert [p.tolist() for p in pieces] == [[BOS, *range(10, 20), EOS]] and lost == 0
    pieces, lost = frame_and_split(list(range(10, 40)), BOS, EOS, row_length=16, min_tail=4)   # 32 tokens: 16 + 16
    assert [len(p) for p in pieces] == [16, 16] and lost == 0
    pieces, lost = frame_and_split(list(range(10, 41)), BOS, EOS, row_length=16, min_tail=4)   # 33: tail of 1 dropped
    assert [len(p) for p in pieces] == [16, 16] and lost == 1
    pieces, lost = frame_and_split(list(range(10, 45)), BOS, EOS, row_length=16, min_tail=4)   # 37: tail of 5 kept
    assert [len(p) for p in pieces] == [16, 16, 5] and lost == 0


def test_best_fit_picks_the_tightest_row() -> None:
    packer = BestFitPacker(row_length=10, open_rows=4)
    for n in (6, 5):                       # rows: [6] (4 left), [5] (5 left)
        assert list(packer.add(np.full(n, n, dtype=np.uint32))) == []
    rows = list(packer.add(np.full(4, 4, dtype=np.uint32)))   # fits row [6] exactly -> closes it
    assert len(rows) == 1 and rows[0].ids.tolist() == [6] * 6 + [4] * 4 and rows[0].cu.tolist() == [0, 6, 10]


@pytest.mark.parametrize("row_length,target", [(64, 0.97), (1024, 0.99)])
def test_packing_keeps_every_token_and_fills_rows(row_length: int, target: float) -> None:
    rng = np.random.default_rng(0)
    docs = [rng.integers(5, 60000, size=int(n), dtype=np.uint32) for n in rng.integers(1, 2 * row_length, size=3000)]
    packer = BestFitPacker(row_length)
    rows = []
    stream = []
    for doc in docs:
        pieces, lost = frame_and_split(doc, BOS, EOS, row_length, min_tail=1)
        assert lost == 0
        stream.extend(pieces)
        for p in pieces:
            rows.extend(packer.add(p))
    rows.extend(packer.finish())
    # Every token is kept exactly once: the multiset of ids is unchanged.
    packed = np.concatenate([r.ids[: r.used] for r in rows])
    assert np.array_equal(np.sort(packed), np.sort(np.concatenate(stream)))
    assert all(np.all(r.ids[r.used:] == 0) and np.all(np.diff(r.cu) > 0) for r in rows)
    # Rows close early when fewer than min_split (8) slots are left; only the last row may be much emptier.
    assert sum(row_length - r.used >= 8 for r in rows[:-1]) <= len(rows) // 100
    full = rows[:-1]
    efficiency = sum(r.used for r in full) / (len(full) * row_length)
    assert efficiency >= target


def test_row_writer_bytes_equal_streamings_encoder(tmp_path) -> None:
    from streaming import MDSWriter

    from data_prep.mds_rows import RowWriter, row_columns

    ours = RowWriter(out=str(tmp_path / "a"), row_length=64)
    theirs = MDSWriter(out=str(tmp_path / "b"), columns=row_columns(64))
    rng = np.random.default_rng(0)
    for pieces in (1, 3, 255, 300):
        cu = np.sort(rng.choice(np.arange(1, 64 * 8), size=pieces, replace=False)).astype(np.int32)
        sample = {"input_ids": rng.integers(0, 2**32 - 1, 64, dtype=np.uint32), "cu_seqlens": np.concatenate([[0], cu]).astype(np.int32)}
        assert ours.encode_sample(sample) == theirs.encode_sample(sample)
