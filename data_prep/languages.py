"""mmBERT's language sets (recipe §7), read from the shipped `language_counts.csv` (MIT, see its SOURCE note).

Codes in the CSV are bare ISO 639-3 (plus `code`); corpora label languages `<iso639-3>_<Script>`, and
source code `code` or, split by programming language, `code_<name>` (`code_python`, `code_cpp`): every
sub-stream counts as `code`, so a named set that has `code` takes all of them.
`labels_for` maps a set onto the labels a corpus actually has (a language may have several scripts).
"""
from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path

COUNTS_CSV = Path(__file__).with_name("language_counts.csv")
LABEL_RE = re.compile(r"^([a-z]{3}_[A-Z][a-z]{3}|code|code_[a-z0-9]+)$")

# Named set -> CSV column. ext, decay_cont and decay_eng share the 109 + code languages.
SET_COLUMNS = {
    "pretrain": "pretrain",
    "ext": "ext",
    "decay_cont": "decay-mid",
    "decay_eng": "decay-eng",
    "decay_all": "decay-all",
}


@lru_cache(maxsize=1)
def token_counts() -> dict[str, dict[str, float]]:
    """{code: {column: tokens}} for every row of the CSV."""
    with COUNTS_CSV.open(newline="") as f:
        return {row["language"]: {k: float(v) for k, v in row.items() if k != "language"} for row in csv.DictReader(f)}


def language_set(name: str) -> list[str]:
    """The ISO 639-3 codes (and `code`) with tokens in the named mmBERT phase."""
    if name not in SET_COLUMNS:
        raise ValueError(f"unknown language set {name!r}; choose one of {sorted(SET_COLUMNS)}")
    column = SET_COLUMNS[name]
    return sorted(code for code, counts in token_counts().items() if counts[column] > 0)


def is_label(label: str) -> bool:
    return bool(LABEL_RE.match(label))


def code_of(label: str) -> str:
    """`rus_Cyrl` -> `rus`; `code_python` -> `code`."""
    return label.split("_", 1)[0]


def labels_for(codes: list[str] | str, available: list[str]) -> list[str]:
    """Corpus labels (`rus_Cyrl`, ...) whose ISO code is in `codes` (a list, or a named set)."""
    wanted = set(language_set(codes) if isinstance(codes, str) else codes)
    return sorted(label for label in available if code_of(label) in wanted or label in wanted)
