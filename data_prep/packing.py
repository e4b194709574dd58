"""Documents -> fixed-length rows: splitting and best-fit packing (recipe §6).

A row is `row_length` token ids (padding id 0 at the tail) and its boundaries `cu` =
[0, end of piece 1, ..., end of last piece]: positions past `cu[-1]` are padding.
Pieces never span rows; a document split to fill a row becomes two pieces (two sequences).

This is data_prep's hot loop after SentencePiece itself, so it works on whole pieces and keeps
per-token work in C: the tokenizer's arrays are viewed, never converted, and each piece is copied once, into its row.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass

import numpy as np


@dataclass
class Row:
    ids: np.ndarray      # (row_length,) uint32
    cu: np.ndarray       # (pieces + 1,) int32

    @property
    def used(self) -> int:
        return int(self.cu[-1])


def split_document(framed: np.ndarray, row_length: int, min_tail: int) -> tuple[list[np.ndarray], int]:
    """A framed document ([bos] + ids + [eos], uint32 or the tokenizer's int32) cut into row-length uint32 pieces;
    a tail shorter than `min_tail` is dropped. Returns the pieces (views, no copy) and the number of tokens dropped.
    """
    ids = framed.view(np.uint32) if framed.dtype == np.int32 else framed
    n = len(ids)
    if n <= row_length:
        return [ids], 0
    pieces = [ids[i : i + row_length] for i in range(0, n, row_length)]
    if len(pieces[-1]) < min_tail:
        return pieces[:-1], len(pieces[-1])
    return pieces, 0


_NOTHING: tuple[Row, ...] = ()
_KEY_BITS = 40
_KEY_MASK = (1 << _KEY_BITS) - 1


class BestFitPacker:
    """Each piece goes to the open row with the least space that still fits it.

    When no row fits and all `open_rows` are taken, the fullest row is closed after taking the head
    of the piece (both parts keep >= `min_split` tokens), so a closed row wastes < `min_split` slots.
    `finish` fills the last rows sequentially, so at most one partial row remains. Open rows are
    kept sorted by (free space, age) in one list of ints, free << 40 | key, so a best fit is one
    bisection and ties go to the oldest row.
    """

    def __init__(self, row_length: int, open_rows: int = 32, min_split: int = 8) -> None:
        self.row_length = row_length
        self.open_rows = open_rows
        self.min_split = min_split
        self._open: list[int] = []               # free slots << 40 | row key, ascending
        self._rows: dict[int, list[np.ndarray]] = {}
        self._next_key = 0

    def add(self, piece: np.ndarray) -> tuple[Row, ...] | list[Row]:
        """Place one piece; returns the rows this closed (usually none)."""
        n = len(piece)
        if not 0 < n <= self.row_length:
            raise ValueError(f"piece of {n} tokens does not fit a row of {self.row_length}")
        i = bisect_left(self._open, n << _KEY_BITS)
        if i < len(self._open):
            slot = self._open.pop(i)
            key, left = slot & _KEY_MASK, (slot >> _KEY_BITS) - n
            self._rows[key].append(piece)
            if left == 0:
                return [self._close(key)]
            insort(self._open, left << _KEY_BITS | key)
            return _NOTHING
        closed: list[Row] = []
        if len(self._open) >= self.open_rows:
            slot = self._open.pop(0)                               # the fullest row
            key, left = slot & _KEY_MASK, slot >> _KEY_BITS
            head = self._split_point(n, left)
            if head:
                self._rows[key].append(piece[:head])
                piece = piece[head:]
            closed.append(self._close(key))
        key, self._next_key = self._next_key, self._next_key + 1
        self._rows[key] = [piece]
        if len(piece) == self.row_length:
            closed.append(self._close(key))
        else:
            insort(self._open, (self.row_length - len(piece)) << _KEY_BITS | key)
        return closed

    def finish(self) -> list[Row]:
        """Refill the open rows' pieces sequentially (splitting as needed); at most one partial row is left."""
        pieces = [p for key in sorted(self._rows) for p in self._rows[key]]
        self._rows, self._open = {}, []
        closed, current, used = [], [], 0
        for piece in pieces:
            while len(piece):
                left = self.row_length - used
                head = len(piece) if len(piece) <= left else self._split_point(len(piece), left)
                if head:
                    current.append(piece[:head])
                    used += head
                    piece = piece[head:]
                if not head or self.row_length - used < self.min_split:
                    closed.append(self._row(current))
                    current, used = [], 0
        if used:
            closed.append(self._row(current))
        return closed

    def _split_point(self, n: int, left: int) -> int:
        """How much of an n-token piece to put in `left` free slots: both parts keep >= min_split tokens,
        so a row closed after it wastes fewer than min_split slots. 0 means: do not split."""
        head = min(left, n - self.min_split)
        return head if head >= self.min_split else 0

    def _close(self, key: int) -> Row:
        return self._row(self._rows.pop(key))

    def _row(self, pieces: list[np.ndarray]) -> Row:
        ids = np.zeros(self.row_length, dtype=np.uint32)
        cu = [0]
        pos = 0
        for p in pieces:
            end = pos + len(p)
            ids[pos:end] = p
            cu.append(end)
            pos = end
        return Row(ids, np.array(cu, dtype=np.int32))
