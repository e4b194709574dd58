"""Which documents a language holds out for validation.

A document's key is (file ordinal in its language, record index in that file); its score is a hash of
(seed, key), so a corpus with one file per language (a parallel corpus such as NTREX) holds out the same
line numbers in every language, and the choice does not depend on how the work was cut. In order:

1. FineWeb2's `test/` files, when a language has them, are its validation documents (and nothing else is).
2. `--val-docs N`: the N usable documents with the lowest scores.
3. `--val-fraction f`: documents scoring below f; a language with at least two usable documents and none
   below f holds out its lowest-scoring one, so every language gets validation rows (the low-resource
   languages of the decay are the point of it). One document alone stays in training, and the manifest
   says so.
"""
from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from .readers import BadInput, LanguageSource, file_records

Key = tuple[int, int]


def holdout_score(seed: int, index: int, file: int = 0) -> float:
    """A uniform number per (seed, file, record index); the first file keeps the key of a one-file corpus."""
    text = f"{seed}:{index}" if file == 0 else f"{seed}:{file}:{index}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


@dataclass(frozen=True)
class Holdout:
    """The decision for one language; `is_val` is what the unit workers call per document."""
    seed: int
    fraction: float
    keys: frozenset[Key] | None = None      # an explicit set (--val-docs) or None: by fraction
    extra: Key | None = None                # the lowest-scoring document when the fraction holds out none
    by_test_files: bool = False
    note: str | None = None                 # why the language has no validation rows, when it has none

    def is_val(self, file: int, index: int, held_out_file: bool) -> bool:
        if self.by_test_files:
            return held_out_file
        if self.keys is not None:
            return (file, index) in self.keys
        return holdout_score(self.seed, index, file) < self.fraction or (file, index) == self.extra


def fraction_rule(seed: int, fraction: float, keys: Iterable[Key]) -> tuple[Key | None, str | None]:
    """(the extra held-out key, or None; a note when nothing is held out) for usable documents `keys`, streamed."""
    if fraction <= 0:
        return None, "--val-fraction is 0"
    count, lowest = 0, (2.0, None)
    for f, i in keys:
        score = holdout_score(seed, i, f)
        if score < fraction:
            return None, None
        count += 1
        lowest = min(lowest, (score, (f, i)))
    if count < 2:
        return None, f"{count} usable document(s): kept for training"
    return lowest[1], None


def language_holdout(src: LanguageSource, seed: int, fraction: float, val_docs: int | None, text_field: str,
                     max_chars: int, whole: bool) -> Holdout:
    """The hold-out of one language. With `whole` (the language is one work unit, so it is small) the fraction
    rule's fallback is worked out from a read of its records; --val-docs always reads them once, keeping N keys."""
    if any(f.held_out for f in src.files):
        return Holdout(seed, fraction, by_test_files=True)
    if val_docs is None and not whole:
        return Holdout(seed, fraction, note=None if fraction > 0 else "--val-fraction is 0")
    keys = _usable_keys(src, text_field, max_chars)
    if val_docs is not None:
        lowest = heapq.nsmallest(val_docs, keys, key=lambda k: holdout_score(seed, k[1], k[0]))
        return Holdout(seed, fraction, keys=frozenset(lowest), note=None if lowest else "--val-docs is 0 or no usable documents")
    extra, note = fraction_rule(seed, fraction, keys)
    return Holdout(seed, fraction, extra=extra, note=note)


def _usable_keys(src: LanguageSource, text_field: str, max_chars: int):
    for ordinal, f in enumerate(src.files):
        for index, _ in file_records(f, BadInput(), text_field, max_chars):
            yield ordinal, index
