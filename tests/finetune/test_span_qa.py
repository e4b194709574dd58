"""Extractive QA (head=span): the official SQuAD scoring, SQuAD v1.1/v2 input, strided windows mapped back to
characters through SentencePiece's offsets, the built-in sentence task and a SQuAD v2 file through the CLI, and
the export in transformers' own ModernBertForQuestionAnswering."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from mmbert_pl.finetune.span_data import QAExample, make_windows, read_squad, sentence_task
from mmbert_pl.finetune.squad_metrics import normalize_answer, qa_scores
from tests.in_process import command


def test_scores_are_the_official_squad_v2_ones() -> None:
    assert normalize_answer("The  Cat, sat (on) a mat!") == "cat sat on mat"
    assert normalize_answer("Theatre an-other") == "theatre another"       # whole words only; hyphen is punctuation
    scores = qa_scores([["the Norman conquest", "Normans"], ["in 1066"], []],
                       ["Norman conquest", "1066 France", ""])
    # 1: exact after normalisation. 2: one shared word, precision 1/2, recall 1/2 -> F1 0.5. 3: unanswerable, empty.
    assert scores["exact_match"] == pytest.approx(2 / 3) and scores["f1"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert qa_scores([[]], ["something"]) == {"exact_match": 0.0, "f1": 0.0, "questions": 1}


def squad_json(examples: list[QAExample], impossible: list[QAExample] = ()) -> dict:
    """SQuAD v2 layout, one article per language (its `lang` field), one paragraph per context."""
    articles: dict[str, list] = {}
    for e in list(examples) + list(impossible):
        qa = {"id": e.id, "question": e.question,
              "answers": [{"text": t, "answer_start": s} for t, s in e.answers], "is_impossible": not e.answers}
        articles.setdefault(e.language, []).append({"context": e.context, "qas": [qa]})
    return {"version": "v2.0", "data": [{"title": k, "lang": k, "paragraphs": v} for k, v in articles.items()]}


def test_squad_files_are_read_and_their_errors_named(tmp_path: Path) -> None:
    context = "Oslo is the capital of Norway. It lies on a fjord."
    good = [QAExample("q1", "What is Oslo?", context, [("the capital of Norway", 8)], "eng"),
            QAExample("q2", "Who founded it?", context, [], "eng")]
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(squad_json(good)))
    assert read_squad(path, "lang") == good
    assert read_squad(path)[0].language is None
    with pytest.raises(ValueError, match="no field 'language'"):
        read_squad(path, "language")
    doc = squad_json(good)
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 9
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"1 question\(s\) have an answer whose answer_start does not point .*\['q1'\]"):
        read_squad(path)
    path.write_text(json.dumps([{"context": context}]))
    with pytest.raises(ValueError, match="is not SQuAD JSON"):
        read_squad(path)
    with pytest.raises(ValueError, match="does not exist"):
        read_squad(tmp_path / "missing.json")


def test_strided_windows_map_every_answer_back_to_its_characters(tokenizer_model: Path, sample_dir: Path) -> None:
    spaced, _ = sentence_task(sample_dir, languages=6, per_language=20, sentences=4, max_words=12, val_share=0.2, mixed=False)
    # Unspaced scripts and byte-fallback characters: an answer cut out of the middle of a line.
    unspaced = []
    for name in ("cmn_Hani", "jpn_Jpan", "tha_Thai"):
        line = max((sample_dir / f"{name}.txt").read_text(encoding="utf-8").splitlines()[:50], key=len)
        at = len(line) // 2
        unspaced.append(QAExample(name, line[:8], line + " 𓀀𓀁 ", [(line[at : at + 12], at)], name))
    examples = spaced + unspaced
    from data_prep.tokenizer import load_tokenizer

    sp, stride = load_tokenizer(tokenizer_model), 24
    windows = make_windows(examples, tokenizer_model, max_tokens=96, stride=stride, max_question_tokens=16)
    assert all(len(w.ids) <= 96 for w in windows)
    by_example: dict[int, list] = {}
    for w in windows:
        by_example.setdefault(w.example, []).append(w)
    assert len(windows) > 2 * len(examples)                                  # long contexts took several windows
    assert sum(bool(w.start) for w in windows) > len(examples) / 2
    for k, e in enumerate(examples):
        text, start = e.answers[0]
        own = by_example[k]
        covered = [(a, b) for w in own for a, b in w.spans]
        assert min(a for a, _ in covered) == 0 and max(b for _, b in covered) == len(e.context)
        for w, nxt in zip(own, own[1:]):
            assert w.spans[-stride:] == nxt.spans[:stride]                  # consecutive windows share `stride` tokens
        found = [w for w in own if w.start]
        if len(sp.encode(text)) < stride:                                # then some window holds all of it
            assert found, f"{e.id}: the answer is in no window"
        for w in found:
            s, t = w.spans[w.start - w.first][0], w.spans[w.end - w.first][1]
            recovered = e.context[s:t]
            assert text in recovered and s <= start
            if e.language not in ("cmn_Hani", "jpn_Jpan", "tha_Thai"):
                assert recovered.strip() == text                           # word-aligned answers come back exactly


def finetune(*overrides: str, out: Path) -> subprocess.CompletedProcess:
    return command("mmbert_pl.finetune", ["head=span", "progress_bar=false", *overrides], {**os.environ, "MMBERT_RUNS": str(out)})


SENTENCE_TASK = ("data.max_tokens=192", "data.stride=64", "data.batch_size=8", "dropout=0", "lr=1e-3", "epochs=4")


def test_sentence_task_beats_its_baseline_and_exports_to_transformers(trained_run: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForQuestionAnswering

    from mmbert_pl.finetune.span_classifier import SpanClassifier
    from mmbert_pl.finetune.span_data import collate_spans

    out = tmp_path / "span"
    r = finetune("task=sentence", *SENTENCE_TASK, f"encoder={trained_run / 'hf'}", f"out_dir={out}", out=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    base = results["baseline"]
    # Stated margin (README): F1 10 points over the question-blind answer, the context's first sentence, and a
    # higher exact match (the baseline is right 1 time in 3; 0.35 EM / 0.36 F1 here, the model 0.42 / 0.50 after 4 epochs).
    assert results["f1"] > base["f1"] + 0.10 and results["exact_match"] > base["exact_match"], results
    assert results["squad_v2"] is False and len(results["per_language"]) == 6
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == results["validation_questions"]

    ours = SpanClassifier.load_from_checkpoint(results["best_checkpoint"], map_location="cpu").eval()
    hf = AutoModelForQuestionAnswering.from_pretrained(out / "hf", attn_implementation="eager").eval()
    assert hf.config.id2label == {0: "start", 1: "end"}
    example = QAExample("x", "capital of Norway", "Oslo is the capital of Norway. It lies on a fjord.", [])
    window = make_windows([example], out / "hf" / "tokenizer.model", 64, 16, 16)[0]
    batch = collate_spans([(0, window)])
    with torch.no_grad():
        mine = ours(batch["input_ids"], batch["cu_seqlens"])
        theirs = hf(input_ids=batch["input_ids"][None])
    torch.testing.assert_close(torch.stack([theirs.start_logits[0], theirs.end_logits[0]], -1), mine, atol=2e-4, rtol=1e-4)


def test_squad_v2_files_train_with_unanswerable_questions(trained_run: Path, sample_dir: Path, tmp_path: Path) -> None:
    train, val = sentence_task(sample_dir, languages=2, per_language=24, sentences=3, max_words=15, val_share=0.2, mixed=False, seed=3)
    # Unanswerable: a fragment of another context asked against this one.
    def unanswerable(rows: list[QAExample]) -> list[QAExample]:
        return [QAExample(f"{e.id}-none", o.question, e.context, [], e.language) for e, o in zip(rows, rows[1:])
                if o.context != e.context]

    impossible = unanswerable(val)
    for name, rows, extra in (("train", train, unanswerable(train)), ("dev", val, impossible)):
        (tmp_path / f"{name}.json").write_text(json.dumps(squad_json(rows, extra), ensure_ascii=False))
    out = tmp_path / "v2"
    r = finetune(f"encoder={trained_run / 'hf'}", f"data.train={tmp_path / 'train.json'}",
                 f"data.validation={tmp_path / 'dev.json'}", "data.language=lang", "epochs=1", f"out_dir={out}", out=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["validation_questions"] == len(val) + len(impossible) and set(results["per_language"]) == {
        e.language for e in val}
    predictions = json.loads((out / "predictions.json").read_text())
    assert set(predictions) == {e.id for e in val + impossible}
    golds = {e.id: e.gold for e in val + impossible}
    assert qa_scores(list(golds.values()), [predictions[k] for k in golds])["f1"] == pytest.approx(results["f1"])
    assert "SQuAD v2: empty answers allowed" in r.stdout and results["squad_v2"] is True
    assert results["no_answer"]["questions"] == len(impossible) and results["has_answer"]["questions"] == len(val)
    assert qa_scores([[]] * len(impossible), [predictions[e.id] for e in impossible]) == results["no_answer"]


def test_span_head_refuses_a_token_task(tmp_path: Path) -> None:
    r = finetune("task=codeswitch", f"encoder={tmp_path}", out=tmp_path)
    assert r.returncode == 2 and "task=codeswitch is a token task; head=span takes task=files or task=sentence" in r.stderr, \
        r.stderr[-2000:]
