"""Token accuracy and entity-level F1 over IOB/IOB2 tags, scored as seqeval's default (conlleval) mode does:
an entity is a maximal run of one type that starts at `B-X`, or at `I-X` after anything but `I-X`/`B-X`;
a prediction counts only with the exact span and type. Tags without a `B-`/`I-` prefix (other than `O`)
are entities of their own name, one per run (e.g. the code-switching task's language tags)."""
from __future__ import annotations


def entity_spans(tags: list[str]) -> set[tuple[str, int, int]]:
    """(type, first word, last word + 1) of every entity in one sentence."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-") if tag[:2] in ("B-", "I-", "E-", "S-") else ("", "", tag)
        begins = tag != "O" and (prefix in ("B", "S") or name != kind or start is None)
        if start is not None and (tag == "O" or begins):
            spans.add((kind, start, i))
            start, kind = None, None
        if begins:
            start, kind = i, name
        if prefix in ("E", "S") and start is not None:
            spans.add((kind, start, i + 1))
            start, kind = None, None
    return spans


def token_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Token accuracy and micro entity precision, recall and F1 over sentences of word tags."""
    words = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, predicted) for a, b in zip(g, p))
    tp = n_gold = n_pred = 0
    for g, p in zip(gold, predicted):
        gs, ps = entity_spans(g), entity_spans(p)
        tp, n_gold, n_pred = tp + len(gs & ps), n_gold + len(gs), n_pred + len(ps)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"token_accuracy": right / words if words else 0.0, "entity_precision": precision, "entity_recall": recall,
            "entity_f1": f1}
