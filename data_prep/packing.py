"""Documents -> fixed-length rows: framing, splitting, best-fit packing (recipe §6).

A row is `row_length` token ids (padding id 0 at the tail) and its boundaries `cu` =
[0, end of piece 1, ..., end of last piece]: positions past `cu[-1]` are padding.
Pieces never span rows; a document split to fill a row becomes two pieces (two sequences).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class Row:
    ids: np.ndarray      # (row_length,) uint32
    cu: np.ndarray       # (pieces + 1,) int32

    @property
    def used(self) -> int:
        return int(self.cu[-1])


def frame_and_split(ids: list[int] | np.ndarray, bos: int, eos: int, row_length: int, min_tail: int) -> tuple[list[np.ndarray], int]:
    """[bos] + ids + [eos] cut into row-length pieces; tails shorter than `min_tail` are dropped.

    Returns the pieces and the number of tokens dropped.
    """
    framed = np.empty(len(ids) + 2, dtype=np.uint32)
    framed[0], framed[-1] = bos, eos
    framed[1:-1] = ids
    if len(framed) <= row_length:
        return [framed], 0
    pieces = [framed[i : i + row_length] for i in range(0, len(framed), row_length)]
    if len(pieces[-1]) < min_tail:
        return pieces[:-1], len(pieces[-1])
    return pieces, 0


class BestFitPacker:
    """Each piece goes to the open row with the least space that still fits it.

    When no row fits and all `open_rows` are taken, the fullest row is closed after taking the head
    of the piece (both parts keep >= `min_split` tokens), so a closed row wastes < `min_split` slots.
    `finish` fills the last rows sequentially, so at most one partial row remains.
    """

    def __init__(self, row_length: int, open_rows: int = 32, min_split: int = 8) -> None:
        self.row_length = row_length
        self.open_rows = open_rows
        self.min_split = min_split
        self._rows: list[list[np.ndarray]] = []
        self._used: list[int] = []

    def add(self, piece: np.ndarray) -> Iterator[Row]:
        n = len(piece)
        if not 0 < n <= self.row_length:
            raise ValueError(f"piece of {n} tokens does not fit a row of {self.row_length}")
        best, best_left = -1, self.row_length + 1
        for i, used in enumerate(self._used):
            left = self.row_length - used
            if n <= left < best_left:
                best, best_left = i, left
        if best >= 0:
            self._rows[best].append(piece)
            self._used[best] += n
            if best_left == n:
                yield self._close(best)
            return
        if len(self._rows) >= self.open_rows:
            fullest = max(range(len(self._used)), key=self._used.__getitem__)
            head = self._split_point(n, self.row_length - self._used[fullest])
            if head:
                self._rows[fullest].append(piece[:head])
                self._used[fullest] += head
                piece = piece[head:]
            yield self._close(fullest)
        self._rows.append([piece])
        self._used.append(len(piece))
        if len(piece) == self.row_length:
            yield self._close(len(self._rows) - 1)

    def finish(self) -> Iterator[Row]:
        """Refill the open rows' pieces sequentially (splitting as needed); at most one partial row is left."""
        pieces = [p for row in self._rows for p in row]
        self._rows, self._used = [[]], [0]
        for piece in pieces:
            while len(piece):
                left = self.row_length - self._used[0]
                head = len(piece) if len(piece) <= left else self._split_point(len(piece), left)
                if head:
                    self._rows[0].append(piece[:head])
                    self._used[0] += head
                    piece = piece[head:]
                if not head or self.row_length - self._used[0] < self.min_split:
                    yield self._close(0)
                    self._rows, self._used = [[]], [0]
        if self._used and self._used[0]:
            yield self._close(0)
        self._rows, self._used = [], []

    def _split_point(self, n: int, left: int) -> int:
        """How much of an n-token piece to put in `left` free slots: both parts keep >= min_split tokens,
        so a row closed after it wastes fewer than min_split slots. 0 means: do not split."""
        head = min(left, n - self.min_split)
        return head if head >= self.min_split else 0

    def _close(self, i: int) -> Row:
        pieces = self._rows.pop(i)
        self._used.pop(i)
        ids = np.zeros(self.row_length, dtype=np.uint32)
        cu = np.zeros(len(pieces) + 1, dtype=np.int32)
        pos = 0
        for k, p in enumerate(pieces):
            ids[pos : pos + len(p)] = p
            pos += len(p)
            cu[k + 1] = pos
        return Row(ids, cu)
