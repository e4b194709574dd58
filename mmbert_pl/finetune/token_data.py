"""Tagged sentences for token classification: WikiANN/UDPOS-style JSONL, CoNLL text, or the built-in
code-switching task. A sentence's words are encoded one by one (a space before every word but the first, as
the sentence reads), and its tag goes on the word's first sub-token; the others are ignored (-100).

Every problem with the data is one ValueError raised before any model is loaded.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from data_prep.holdout import holdout_score
from data_prep.tokenizer import load_tokenizer

from mmbert_pl.model.documents import cu_seqlens_from_lengths

IGNORED = -100


@dataclass
class TaggedSentence:
    words: list[str]
    tags: list[str]
    language: str | None = None


def read_tagged(path: str | Path, tokens: str = "tokens", tags: str = "tags", language: str | None = None) -> list[TaggedSentence]:
    """`.jsonl` rows {tokens: [...], tags: [...]} (tag names as strings), or CoNLL text: a word, a tab or space
    and its tag per line, a blank line between sentences (`-DOCSTART-` lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist")
    sentences = _read_jsonl(path, tokens, tags, language) if path.suffix == ".jsonl" else _read_conll(path)
    if not sentences:
        raise ValueError(f"data file {path} holds no tagged sentences")
    return sentences


def _read_jsonl(path: Path, tokens: str, tags: str, language: str | None) -> list[TaggedSentence]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n} is not a JSON object ({e.msg})") from None
        missing = [k for k in (tokens, tags, language) if k and k not in record]
        if missing:
            raise ValueError(f"{path}:{n} has no field {missing} (fields: {sorted(record)}); set data.tokens / data.tags / data.language")
        words, labels = [str(w) for w in record[tokens]], [str(t) for t in record[tags]]
        if len(words) != len(labels):
            raise ValueError(f"{path}:{n} has {len(words)} tokens and {len(labels)} tags; give one tag per token")
        if words:
            out.append(TaggedSentence(words, labels, str(record[language]) if language else None))
    return out


def _read_conll(path: Path) -> list[TaggedSentence]:
    out, words, labels = [], [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("-DOCSTART-"):
            continue
        if not line.strip():
            if words:
                out.append(TaggedSentence(words, labels))
            words, labels = [], []
            continue
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(f"{path}:{n}: a CoNLL line is a word, a tab or space, and its tag; got {line!r}")
        words.append(parts[0])
        labels.append(parts[-1])
    if words:
        out.append(TaggedSentence(words, labels))
    return out


def check_tags(train: list[TaggedSentence], validation: list[TaggedSentence]) -> list[str]:
    tags = sorted({t for s in train for t in s.tags})
    unknown = sorted({t for s in validation for t in s.tags} - set(tags))
    if unknown:
        raise ValueError(f"validation tags {unknown[:10]} never occur in the training data ({len(tags)} tags)")
    if len(tags) < 2:
        raise ValueError(f"the training data has {len(tags)} tag(s); token classification needs at least 2")
    return tags


def codeswitch_task(corpus: str | Path, languages: int, per_language: int, val_share: float,
                    seed: int = 0) -> tuple[list[TaggedSentence], list[TaggedSentence]]:
    """The built-in token task: sentences that switch language every few words, each word tagged with its language.

    Runs of 2-6 words are drawn from documents of two random languages of the corpus (`<lang>_<Script>.txt`,
    languages with spaces between words); validation sentences come from held-out documents only."""
    files = sorted(Path(corpus).glob("*.txt"))
    words: dict[bool, dict[str, list[str]]] = {True: {}, False: {}}
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, doc in enumerate(lines):
            pool = words[holdout_score(seed, index) < val_share].setdefault(path.stem, [])
            pool += doc.split()
    spaced = [k for k in sorted(words[False]) if len(words[False][k]) > 200 and len(words[True].get(k, [])) > 20
              and sum(map(len, words[False][k])) / len(words[False][k]) < 15]
    if len(spaced) < 2:
        raise ValueError(f"{corpus}: the code-switching task needs two languages with spaces between words")
    chosen = spaced[:languages]
    rng = random.Random(seed)

    def sentences(held_out: bool, count: int) -> list[TaggedSentence]:
        out = []
        for _ in range(count):
            pair = rng.sample(chosen, 2)
            sentence, tags = [], []
            for turn in range(rng.randint(2, 4)):
                label, pool = pair[turn % 2], words[held_out][pair[turn % 2]]
                start, n = rng.randrange(len(pool)), rng.randint(2, 6)
                run = pool[start : start + n]
                sentence += run
                tags += [label] * len(run)
            out.append(TaggedSentence(sentence, tags, language="+".join(sorted(pair))))
        return out

    return sentences(False, per_language * len(chosen)), sentences(True, max(1, per_language // 4) * len(chosen))


class EncodedTags(torch.utils.data.Dataset):
    """Per sentence: [bos] sub-tokens [eos], the tag index on each word's first sub-token, -100 elsewhere."""

    def __init__(self, sentences: list[TaggedSentence], tokenizer: str | Path, tags: list[str], max_tokens: int,
                 languages: list[str]) -> None:
        tok = load_tokenizer(tokenizer)
        s = tok.specials
        bos, eos, unk = s.bos, s.eos, s.unk if s.unk >= 0 else s.mask     # byte-level BPE has no unk
        index, lang_index = {t: i for i, t in enumerate(tags)}, {k: i for i, k in enumerate(languages)}
        self.items = []
        for s in sentences:
            pieces = tok.encode([w if i == 0 else " " + w for i, w in enumerate(s.words)])
            ids, labels = [bos], [IGNORED]
            for piece, tag in zip(pieces, s.tags):
                if len(ids) + max(1, len(piece)) > max_tokens - 1:
                    break                                   # truncated: the words that fit keep their tags
                piece = piece or [unk]                      # a word that gives no piece keeps its tag on one
                ids += piece
                labels += [index.get(tag, IGNORED)] + [IGNORED] * (len(piece) - 1)
            ids.append(eos)
            labels.append(IGNORED)
            self.items.append((ids, labels, lang_index.get(s.language, -1)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def collate_tags(items: list) -> dict[str, torch.Tensor]:
    """A flat unpadded stream of the batch's sentences, with per-token labels."""
    lengths = torch.tensor([len(ids) for ids, _, _ in items])
    return {"input_ids": torch.tensor([t for ids, _, _ in items for t in ids]), "cu_seqlens": cu_seqlens_from_lengths(lengths),
            "labels": torch.tensor([y for _, labels, _ in items for y in labels]),
            "languages": torch.tensor([g for _, _, g in items])}
