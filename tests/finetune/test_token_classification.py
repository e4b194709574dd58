"""Token classification (head=token): entity scoring as seqeval does it, the two input formats, labels on first
sub-tokens, the built-in code-switching task through the CLI, and the export in transformers' own class."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from mmbert_pl.finetune.token_data import IGNORED, EncodedTags, TaggedSentence, read_tagged
from mmbert_pl.finetune.token_metrics import entity_spans, token_scores
from tests.in_process import command


def test_entity_f1_is_seqeval_default_mode() -> None:
    # seqeval's README example: precision 0.5, recall 0.5, F1 0.5.
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    scores = token_scores(gold, pred)
    assert scores["entity_precision"] == scores["entity_recall"] == scores["entity_f1"] == 0.5
    assert scores["token_accuracy"] == pytest.approx(8 / 10)         # positions 2 and 3 of the first sentence differ
    # IOB1 / conlleval: I- after O or after another type starts an entity; B- splits two of one type.
    assert entity_spans(["O", "I-PER", "I-PER", "I-LOC", "B-LOC", "I-LOC"]) == {("PER", 1, 3), ("LOC", 3, 4), ("LOC", 4, 6)}
    assert entity_spans(["eng_Latn", "eng_Latn", "rus_Cyrl"]) == {("eng_Latn", 0, 2), ("rus_Cyrl", 2, 3)}


def test_jsonl_and_conll_read_the_same_sentences(tmp_path: Path) -> None:
    sentences = [(["Jan", "lives", "in", "Oslo", "."], ["B-PER", "O", "O", "B-LOC", "O"]), (["Hi"], ["O"])]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps({"tokens": w, "tags": t, "lang": "eng"}) + "\n" for w, t in sentences))
    conll = tmp_path / "a.conll"
    conll.write_text("-DOCSTART- O\n\n" + "\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(*s)) for s in sentences) + "\n")
    assert [(s.words, s.tags) for s in read_tagged(jsonl)] == [(s.words, s.tags) for s in read_tagged(conll)] == sentences
    assert read_tagged(jsonl, language="lang")[0].language == "eng"
    (tmp_path / "bad.jsonl").write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n")
    with pytest.raises(ValueError, match="2 tokens and 1 tags"):
        read_tagged(tmp_path / "bad.jsonl")


def test_tags_go_on_the_first_sub_token_of_each_word(tokenizer_model: Path) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    sentence = TaggedSentence(["Internationalisation", "of", "Reykjavík", "ministries"], ["O", "O", "B-LOC", "O"])
    ids, labels, _ = EncodedTags([sentence], tokenizer_model, ["B-LOC", "O"], 256, [])[0]
    starts = [i for i, y in enumerate(labels) if y != IGNORED]
    assert len(starts) == 4 and [labels[i] for i in starts] == [1, 1, 0, 1]
    words = [sp.decode(ids[a:b]).strip() for a, b in zip(starts, starts[1:] + [len(ids) - 1])]
    assert words == sentence.words and len(ids) > 6          # some word took more than one sub-token


def finetune(*overrides: str, out: Path) -> subprocess.CompletedProcess:
    return command("mmbert_pl.finetune", ["progress_bar=false", *overrides], {**os.environ, "MMBERT_RUNS": str(out)})


def test_codeswitching_task_beats_its_baseline_and_exports_to_transformers(trained_run: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForTokenClassification

    from mmbert_pl.finetune.token_classifier import TokenClassifier
    from mmbert_pl.finetune.token_data import collate_tags

    out = tmp_path / "tok"
    r = finetune("head=token", "task=codeswitch", f"encoder={trained_run / 'hf'}", "epochs=6", "lr=1e-3", f"out_dir={out}", out=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    base = results["baseline"]
    # Stated margins: token accuracy 30 points and entity F1 20 points over the most frequent tag.
    assert results["token_accuracy"] > base["token_accuracy"] + 0.3 and results["entity_f1"] > base["entity_f1"] + 0.2, results
    assert results["tags"] == 6 and len(results["per_language"]) > 5
    ours = TokenClassifier.load_from_checkpoint(results["best_checkpoint"], map_location="cpu").eval()
    hf = AutoModelForTokenClassification.from_pretrained(out / "hf", attn_implementation="eager").eval()
    assert hf.config.id2label == dict(enumerate(ours.hparams.tags))
    sentence = TaggedSentence("The ministry said on Monday that".split(), ["eng_Latn"] * 6)
    batch = collate_tags([EncodedTags([sentence], out / "hf" / "tokenizer.model", ours.hparams.tags, 64, [])[0]])
    with torch.no_grad():
        mine = ours(batch["input_ids"], batch["cu_seqlens"])
        theirs = hf(input_ids=batch["input_ids"][None]).logits[0]
    torch.testing.assert_close(theirs, mine, atol=2e-4, rtol=1e-4)


def test_token_head_refuses_a_sequence_task(trained_run: Path, tmp_path: Path) -> None:
    r = finetune("head=token", "task=langid", f"encoder={trained_run / 'hf'}", out=tmp_path)
    assert r.returncode == 2 and "task=langid is a sequence task" in r.stderr, r.stderr[-2000:]
