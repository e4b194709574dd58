"""Exact match and F1 as the official SQuAD v2.0 script scores them (its v1.1 scores are the same on answerable
questions): lower case, ASCII punctuation and the articles a/an/the removed, whitespace collapsed; the best over
the gold answers; an unanswerable question's only gold answer is the empty string. MLQA's script differs only in
stripping Unicode punctuation and per-language articles."""
from __future__ import annotations

import re
import string
from collections import Counter

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def f1(gold: str, pred: str) -> float:
    g, p = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not g or not p:
        return float(g == p)
    common = sum((Counter(g) & Counter(p)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def qa_scores(golds: list[list[str]], predictions: list[str]) -> dict[str, float]:
    """Mean exact match and F1 (0..1) of `predictions` against each question's gold answers (empty list: unanswerable)."""
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0, "questions": 0}
    em = f = 0.0
    for answers, pred in zip(golds, predictions):
        answers = [a for a in answers if normalize_answer(a)] or [""]
        em += max(exact(a, pred) for a in answers)
        f += max(f1(a, pred) for a in answers)
    return {"exact_match": em / len(predictions), "f1": f / len(predictions), "questions": len(predictions)}
