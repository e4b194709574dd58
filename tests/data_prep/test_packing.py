"""Splitting and best-fit packing keep every token and fill rows."""
import numpy as np
import pytest

from data_prep.packing import BestFitPacker, Row, split_document

BOS, EOS = 2, 1


def framed(n: int) -> np.ndarray:
    return np.array([BOS, *range(10, 10 + n), EOS], dtype=np.int32)      # as the tokenizer returns it


def test_split_document_drops_only_short_tails() -> None:
    pieces, lost = split_document(framed(10), row_length=16, min_tail=4)
    assert [p.tolist() for p in pieces] == [framed(10).tolist()] and pieces[0].dtype == np.uint32 and lost == 0
    pieces, lost = split_document(framed(30), row_length=16, min_tail=4)   # 32 tokens: 16 + 16
    assert [len(p) for p in pieces] == [16, 16] and lost == 0
    assert np.concatenate(pieces).tolist() == framed(30).tolist()
    pieces, lost = split_document(framed(31), row_length=16, min_tail=4)   # 33: tail of 1 dropped
    assert [len(p) for p in pieces] == [16, 16] and lost == 1
    pieces, lost = split_document(framed(35), row_length=16, min_tail=4)   # 37: tail of 5 kept
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
        pieces, lost = split_document(doc, row_length, min_tail=1)
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


def reference_best_fit(pieces: list[int], row_length: int, open_rows: int, min_split: int) -> list[list[int]]:
    """Best fit by a linear scan, written out plainly: the rows (as piece lengths) closed before `finish`."""
    rows: list[list[int]] = []
    closed = []
    for n in pieces:
        fits = [i for i, r in enumerate(rows) if row_length - sum(r) >= n]
        if fits:
            best = min(fits, key=lambda i: row_length - sum(rows[i]))     # first (oldest) of the tightest
            rows[best].append(n)
            if sum(rows[best]) == row_length:
                closed.append(rows.pop(best))
            continue
        if len(rows) >= open_rows:
            fullest = max(range(len(rows)), key=lambda i: sum(rows[i]))
            head = min(row_length - sum(rows[fullest]), n - min_split)
            if head >= min_split:
                rows[fullest].append(head)
                n -= head
            closed.append(rows.pop(fullest))
        rows.append([n])
        if n == row_length:
            closed.append(rows.pop())
    return closed


def test_best_fit_matches_a_plain_linear_scan() -> None:
    rng = np.random.default_rng(1)
    lengths = [int(n) for n in rng.integers(1, 65, size=4000)]
    packer = BestFitPacker(row_length=64, open_rows=5, min_split=4)
    closed = [np.diff(r.cu).tolist() for n in lengths for r in packer.add(np.ones(n, dtype=np.uint32))]
    assert closed == reference_best_fit(lengths, 64, open_rows=5, min_split=4)


def test_row_writer_folder_is_byte_identical_to_mds_writers(tmp_path) -> None:
    from streaming import MDSWriter

    from data_prep.mds_rows import RowWriter, row_columns

    rng = np.random.default_rng(0)
    for compression in ("zstd", "zstd:1", "gz", None):
        ours = RowWriter(tmp_path / f"ours-{compression}", 64, compression=compression, size_limit=20_000)
        theirs = MDSWriter(out=str(tmp_path / f"theirs-{compression}"), columns=row_columns(64), compression=compression,
                           size_limit=20_000, hashes=["xxh64"])
        for pieces in [1, 3, 255, 300] * 20:           # boundary headers of both widths; several shards
            cu = np.sort(rng.choice(np.arange(1, 64 * 8), size=pieces, replace=False)).astype(np.int32)
            row = Row(rng.integers(0, 2**32 - 1, 64, dtype=np.uint32), np.concatenate([[0], cu]).astype(np.int32))
            ours.write_row(row)
            theirs.write({"input_ids": row.ids, "cu_seqlens": row.cu})
        ours.finish()
        theirs.finish()
        files = sorted(p.name for p in ours.out.iterdir())
        assert len(files) > 3 and files == sorted(p.name for p in (tmp_path / f"theirs-{compression}").iterdir())
        for name in files:
            assert (ours.out / name).read_bytes() == (tmp_path / f"theirs-{compression}" / name).read_bytes(), name
