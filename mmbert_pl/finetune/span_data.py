"""Extractive QA data: SQuAD v1.1/v2 JSON (as XQuAD, MLQA, TyDiQA-GoldP, FoQA and TiQuaD ship), or the
built-in sentence-finding task; contexts cut into token windows with a stride.

A window is `[bos] question [eos] context-part [eos]`. SentencePiece gives each context token its byte span in
the text; those become character spans, so a predicted token span maps back to the context's own characters.
Every problem with the data is one ValueError raised before any model is loaded.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from data_prep.holdout import holdout_score
from data_prep.tokenizer import load_tokenizer

from mmbert_pl.model.documents import cu_seqlens_from_lengths


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[tuple[str, int]]     # (text, character start in context); empty: unanswerable (SQuAD v2)
    language: str | None = None

    @property
    def gold(self) -> list[str]:
        """The answer texts, as SQuAD scoring takes them."""
        return [text for text, _ in self.answers]


def read_squad(path: str | Path, language: str | None = None) -> list[QAExample]:
    """`data[].paragraphs[].context` with `qas[].question/id/answers[].text/answer_start` (and `is_impossible`).
    `language` names a field of the question, paragraph or article that gives the language (per-language scores)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist")
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not SQuAD JSON (a top-level object with a 'data' list): {e}") from None
    out, wrong = [], []
    for article in articles:
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph.get("qas", []):
                answers = [] if qa.get("is_impossible") else [(a["text"], int(a["answer_start"])) for a in qa.get("answers", [])]
                wrong += [qa["id"] for text, start in answers if context[start : start + len(text)] != text]
                if not answers and not qa.get("is_impossible"):
                    wrong.append(qa["id"])
                lang = next((str(d[language]) for d in (qa, paragraph, article) if language and language in d), None)
                if language and lang is None:
                    raise ValueError(f"{path}: question {qa['id']} has no field {language!r} (nor its paragraph or article); "
                                     "set data.language to the field that names the language, or null")
                out.append(QAExample(str(qa["id"]), qa["question"], context, answers, lang))
    if wrong:
        raise ValueError(f"{path}: {len(wrong)} question(s) have an answer whose answer_start does not point at its text in "
                         f"the context, or no answer without is_impossible: {wrong[:5]}")
    if not out:
        raise ValueError(f"data file {path} holds no questions")
    return out


SENTENCE_END = re.compile(r"(?<=[.!?।။።。！？])\s+(?=\S)")


def sentence_task(corpus: str | Path, languages: list[str] | int, per_language: int, sentences: int, max_words: int,
                  val_share: float, mixed: bool = True, seed: int = 0) -> tuple[list[QAExample], list[QAExample]]:
    """The built-in span task: the context is `sentences` sentences (3 to `max_words` words each), drawn from all
    documents so that contexts rarely repeat: each of another language where `mixed` (a code-switched context; the
    language tells the sentences apart), else all of one (only the words do); the question is a run of 3-6 words of
    one of them, the answer that whole sentence. Languages with spaces between words, from a folder of
    `<lang>_<Script>.txt` (one document per line); validation sentences come from held-out documents. `languages`:
    labels, or the first N usable."""
    if sentences < 2:
        raise ValueError(f"sentence.sentences={sentences}: a context needs at least 2 sentences to choose from")
    rng = random.Random(seed)
    pools: dict[bool, dict[str, list[str]]] = {True: {}, False: {}}
    for path in sorted(Path(corpus).glob("*.txt")):
        docs = path.read_text(encoding="utf-8").splitlines()
        if sum(d.count(" ") for d in docs) < 5 * len(docs):
            continue                                   # no spaces between words: no word fragments to ask with
        for index, doc in enumerate(docs):
            pool = pools[holdout_score(seed, index) < val_share].setdefault(path.stem, [])
            pool.extend(x for x in SENTENCE_END.split(doc.strip()) if 3 <= len(x.split()) <= max_words)
    usable = [k for k in sorted(pools[False]) if min(len(set(pools[h].get(k, ()))) for h in (False, True)) >= sentences]
    if isinstance(languages, int):
        chosen = usable[:languages]
    else:
        chosen = list(languages)
        if missing := [k for k in chosen if k not in usable]:
            raise ValueError(f"sentence.languages: {missing} have no spaces between words or fewer than {sentences} "
                             f"sentences of 3 to {max_words} words in each split of {corpus}; usable here: {usable}")
    if not chosen:
        raise ValueError(f"{corpus}: the sentence task needs a language with spaces between words and {sentences} "
                         f"sentences of 3 to {max_words} words in each split")
    if mixed and len(chosen) < sentences:
        raise ValueError(f"sentence.mixed: a context of {sentences} sentences in different languages needs at least "
                         f"{sentences} languages; sentence.languages gives {len(chosen)}")

    def examples(held_out: bool, count: int) -> list[QAExample]:
        out, pools_here = [], {k: sorted(set(pools[held_out][k])) for k in chosen}
        for lang in chosen:
            for n in range(count):
                if mixed:                              # the asked-about language and sentences-1 others, shuffled
                    others = rng.sample([k for k in chosen if k != lang], sentences - 1)
                    target = rng.randrange(sentences)
                    langs = others[:target] + [lang] + others[target:]
                    parts = [rng.choice(pools_here[k]) for k in langs]
                else:
                    parts, target = rng.sample(pools_here[lang], sentences), rng.randrange(sentences)
                words = parts[target].split()
                size = min(len(words), rng.randint(3, 6))
                w = rng.randrange(len(words) - size + 1)
                start = sum(len(x) + 1 for x in parts[:target])
                out.append(QAExample(f"{lang}-{'val' if held_out else 'train'}-{n}", " ".join(words[w : w + size]),
                                     " ".join(parts), [(parts[target], start)], lang))
        return out

    return examples(False, per_language), examples(True, max(1, per_language // 4))


@dataclass
class Window:
    example: int                       # index of its QAExample
    ids: list[int]                     # [bos] question [eos] context tokens [eos]
    first: int                         # position of the first context token in ids
    spans: list[tuple[int, int]] = field(default_factory=list)   # character span of each context token in the window
    start: int = 0                     # answer's first and last token position; 0 ([bos]) when it is not in the window
    end: int = 0


def make_windows(examples: list[QAExample], tokenizer: str | Path, max_tokens: int, stride: int,
                 max_question_tokens: int) -> list[Window]:
    """Every context in windows of at most `max_tokens`, consecutive windows overlapping by `stride` tokens."""
    tok = load_tokenizer(tokenizer)
    questions = tok.encode([e.question for e in examples])
    contexts = tok.encode_with_spans([e.context for e in examples])
    windows = []
    for k, (e, q, (ids, spans)) in enumerate(zip(examples, questions, contexts)):
        q = q[:max_question_tokens]
        budget = max_tokens - len(q) - 3
        if budget <= stride:
            raise ValueError(f"data.max_tokens={max_tokens} leaves {budget} context tokens after a {len(q)}-token question, "
                             f"not more than data.stride={stride}; raise max_tokens or lower stride / max_question_tokens")
        head = tok.frame(q)
        begin = 0
        while True:
            end = min(len(ids), begin + budget)
            w = Window(k, head + ids[begin:end] + [tok.specials.eos], len(head), spans[begin:end])
            if e.answers:
                text, s = e.answers[0]
                inside = [i for i, (a, b) in enumerate(w.spans) if b > s and a < s + len(text)]
                if inside and w.spans[inside[0]][0] <= s and w.spans[inside[-1]][1] >= s + len(text):
                    w.start, w.end = w.first + inside[0], w.first + inside[-1]
            windows.append(w)
            if end == len(ids):
                break
            begin = end - stride
    return windows


class EncodedSpans(torch.utils.data.Dataset):
    def __init__(self, windows: list[Window]) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[int, Window]:
        return i, self.windows[i]


def collate_spans(items: list[tuple[int, Window]]) -> dict[str, torch.Tensor]:
    """A flat unpadded stream of the batch's windows, with their answer positions and indices."""
    lengths = torch.tensor([len(w.ids) for _, w in items])
    return {"input_ids": torch.tensor([t for _, w in items for t in w.ids]), "cu_seqlens": cu_seqlens_from_lengths(lengths),
            "start": torch.tensor([w.start for _, w in items]), "end": torch.tensor([w.end for _, w in items]),
            "window": torch.tensor([i for i, _ in items])}
