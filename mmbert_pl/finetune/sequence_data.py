"""Labelled examples for fine-tuning: CSV/JSONL files, or the built-in language-identification task.

Every problem with the data (a missing file or column, an empty split, a validation label the
training data never shows) is one ValueError raised before any model is loaded.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from data_prep.holdout import holdout_score
from data_prep.tokenizer import load_tokenizer

from mmbert_pl.model.documents import cu_seqlens_from_lengths


@dataclass
class Example:
    text: str
    label: str
    text_pair: str | None = None
    language: str | None = None


def read_records(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist")
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    if path.suffix in (".jsonl", ".json"):
        records = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n} is not a JSON object ({e.msg})") from None
        return records
    raise ValueError(f"data file {path}: use .csv or .jsonl")


def examples_from(path: str | Path, text: str, label: str, text_pair: str | None, language: str | None) -> list[Example]:
    records = read_records(path)
    if not records:
        raise ValueError(f"data file {path} holds no examples")
    wanted = [c for c in (text, label, text_pair, language) if c]
    missing = [c for c in wanted if c not in records[0]]
    if missing:
        raise ValueError(f"data file {path} has no column {missing} (columns: {sorted(records[0])}); "
                         f"set data.text / data.label / data.text_pair / data.language to the right names")
    return [Example(str(r[text]), str(r[label]), str(r[text_pair]) if text_pair else None,
                    str(r[language]) if language else None) for r in records]


def check_labels(train: list[Example], validation: list[Example]) -> list[str]:
    """The sorted label set of the training data; a validation label outside it is an error."""
    labels = sorted({e.label for e in train})
    unknown = sorted({e.label for e in validation} - set(labels))
    if unknown:
        raise ValueError(f"validation labels {unknown[:10]} never occur in the training data ({len(labels)} labels); "
                         "a classifier cannot predict them")
    if len(labels) < 2:
        raise ValueError(f"the training data has {len(labels)} label(s); classification needs at least 2")
    return labels


def language_id_task(corpus: str | Path, chunk_chars: int, per_language: int, val_share: float,
                     seed: int = 0) -> tuple[list[Example], list[Example]]:
    """Language identification over a folder of `<lang>_<Script>.txt` (one document per line).

    Documents are cut into pieces of about `chunk_chars` characters at spaces (or anywhere for
    scripts without them); whole documents go to validation by hold-out score, so no piece of a
    validation document is trained on. At most `per_language` training pieces per language (and a
    quarter of that for validation)."""
    files = sorted(Path(corpus).glob("*.txt"))
    if not files:
        raise ValueError(f"{corpus} holds no <lang>_<Script>.txt files")
    train, val = [], []
    for path in files:
        label = path.stem
        pieces: dict[bool, list[Example]] = {True: [], False: []}
        for index, doc in enumerate(path.read_text(encoding="utf-8").splitlines()):
            is_val = holdout_score(seed, index) < val_share
            for piece in chunks(doc, chunk_chars):
                pieces[is_val].append(Example(piece, label, language=label))
        train += pieces[False][:per_language]
        val += pieces[True][: max(1, per_language // 4)]
    return train, val


def chunks(text: str, size: int) -> list[str]:
    words, out, current = text.split(" "), [], ""
    for w in words:
        while len(w) > size:                      # unspaced scripts: cut inside the "word"
            if current:
                out.append(current)
                current = ""
            out.append(w[:size])
            w = w[size:]
        if current and len(current) + 1 + len(w) > size:
            out.append(current)
            current = w
        else:
            current = f"{current} {w}" if current else w
    return [c for c in out + [current] if c.strip()]


class Encoded(torch.utils.data.Dataset):
    """Token ids per example: [bos] text [eos] (text_pair [eos]), the longer part truncated first."""

    def __init__(self, examples: list[Example], tokenizer: str | Path, labels: list[str], max_tokens: int,
                 languages: list[str]) -> None:
        tok = load_tokenizer(tokenizer)
        index = {k: i for i, k in enumerate(labels)}
        lang_index = {k: i for i, k in enumerate(languages)}
        firsts = tok.encode([e.text for e in examples])
        seconds = tok.encode([e.text_pair or "" for e in examples])
        self.items = []
        for e, a, b in zip(examples, firsts, seconds):
            if e.text_pair is None:
                a = a[: max_tokens - 2]
            else:
                a, b = truncate_pair(a, b, max_tokens - 3)
            ids = tok.frame(a, b if e.text_pair is not None else None)
            self.items.append((ids, index[e.label], lang_index.get(e.language, -1)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def truncate_pair(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Longest first: the shorter part stays whole while it fits in half the budget."""
    if len(a) + len(b) <= budget:
        return a, b
    half = budget // 2
    if len(a) <= half:
        return a, b[: budget - len(a)]
    if len(b) <= half:
        return a[: budget - len(b)], b
    return a[: budget - half], b[:half]


def collate(items: list) -> dict[str, torch.Tensor]:
    """A flat unpadded stream of the batch's examples."""
    lengths = torch.tensor([len(ids) for ids, _, _ in items])
    return {"input_ids": torch.tensor([t for ids, _, _ in items for t in ids]),
            "cu_seqlens": cu_seqlens_from_lengths(lengths),
            "labels": torch.tensor([y for _, y, _ in items]), "languages": torch.tensor([g for _, _, g in items])}
