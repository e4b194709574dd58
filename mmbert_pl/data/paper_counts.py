"""mmBERT's corpus as numbers only, for planning the paper's run without its data (`data=mmbert_counts`).

`language_counts.csv` gives, per language (ISO 639-3, plus `code`), the tokens of each mmBERT phase's data mix;
the corpus sizes behind them are not published. Each language's largest count over the five phases stands for
its available tokens: a language is at least as large as the most any phase drew of it at about one epoch, so the
plan's epochs are an upper bound, and its shares follow the stage's own τ over those sizes.
"""
from __future__ import annotations

from pathlib import Path

from data_prep.languages import COUNTS_CSV, SET_COLUMNS

GEMMA_VOCAB = 256000


def counts_file(name: str) -> Path:
    """`mmbert`: the shipped CSV; else a path to a CSV of the same columns."""
    path = COUNTS_CSV if name == "mmbert" else Path(name)
    if not path.is_file():
        raise ValueError(f"data.counts={name}: no such file; give `mmbert` (the shipped language_counts.csv) or a CSV "
                         f"with a `language` column and the phase columns {sorted(SET_COLUMNS.values())}")
    return path


def counts_manifest(path: Path, row_length: int) -> dict:
    """A manifest of the shape data_prep writes, with no shards behind it: languages, tokens, row length, vocab."""
    import csv

    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = sorted(set(SET_COLUMNS.values()) - set(rows[0] if rows else ()))
    if missing or not rows or "language" not in rows[0]:
        raise ValueError(f"data.counts={path}: needs a `language` column and the phase columns; missing {missing or ['language']}")
    languages = {}
    for row in rows:
        tokens = max(int(float(row[c])) for c in SET_COLUMNS.values())
        if tokens > 0:
            languages[row["language"]] = {"train": {"tokens": tokens, "rows": tokens // row_length}, "val": {"rows": 0}}
    return {"languages": languages, "row_length": row_length, "planned_from": str(path),
            "tokenizer": {"vocab_size": GEMMA_VOCAB, "pad": 0, "mask": 4, "path": None, "sha256": None}}
