"""The MLM export as a sentence embedder: sentence-transformers loads it and gives `evaluate retrieval`'s
mean-pooled embeddings, and mteb scores it on a task whose data is a local folder, with the Hub switched off."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmbert_pl.embeddings.embedding import embed, tokenize
from mmbert_pl.files.model_files import read_model
from mmbert_pl.embeddings.retrieval import read_parallel, retrieval_scores
from mmbert_pl.files.sentence_transformers_files import EMBEDDING_MAX_TOKENS


@pytest.fixture
def offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_sentence_transformers_gives_our_embeddings(trained_run: Path, sample_dir: Path, offline) -> None:
    from sentence_transformers import SentenceTransformer

    hf = trained_run / "hf"
    texts = [line for name in ("eng_Latn", "cmn_Hani", "amh_Ethi", "tha_Thai")
             for line in (sample_dir / f"{name}.txt").read_text(encoding="utf-8").splitlines()[:3]]
    texts.append(" ".join(texts) * 4)                          # longer than the 512-token limit: truncated alike
    model = SentenceTransformer(str(hf), device="cpu")
    assert model.max_seq_length == EMBEDDING_MAX_TOKENS
    theirs = torch.from_numpy(model.encode(texts, batch_size=4))
    ours = embed(read_model(hf), tokenize(hf / "tokenizer.model", texts, EMBEDDING_MAX_TOKENS))
    torch.testing.assert_close(theirs, ours, atol=2e-5, rtol=1e-4)
    assert len(tokenize(hf / "tokenizer.model", texts[-1:], 10**6)[0]) > EMBEDDING_MAX_TOKENS


def test_mteb_scores_the_export_on_a_local_task(trained_run: Path, sample_dir: Path, offline) -> None:
    import mteb
    from sentence_transformers import SentenceTransformer

    from mmbert_pl.evaluate.mteb_local import parallel_bitext_task

    hf, languages = trained_run / "hf", ["deu_Latn", "fra_Latn", "rus_Cyrl"]
    task = parallel_bitext_task(sample_dir, languages)
    result = mteb.evaluate(SentenceTransformer(str(hf), device="cpu"), tasks=[task], cache=None, show_progress_bar=False)
    scores = {s["hf_subset"]: s["accuracy"] for s in result.task_results[0].scores["test"]}
    assert set(scores) == {f"{k}-eng_Latn" for k in languages}

    model, texts = read_model(hf), read_parallel(sample_dir, languages + ["eng_Latn"])
    embeddings = {k: (list(v), embed(model, tokenize(hf / "tokenizer.model", list(v.values()), EMBEDDING_MAX_TOKENS)))
                  for k, v in texts.items()}
    ours = {s.label: s.to_pivot for s in retrieval_scores(embeddings)}
    assert scores == pytest.approx({f"{k}-eng_Latn": ours[k] for k in languages}, abs=1e-6)   # ours: float32
    assert max(scores.values()) > 0.1                           # the pipeline retrieves, not just runs


def test_local_task_names_a_bad_folder(tmp_path: Path) -> None:
    from mmbert_pl.evaluate.mteb_local import parallel_bitext_task

    with pytest.raises(ValueError, match="holds no <lang>_<Script>.txt files"):
        parallel_bitext_task(tmp_path, ["deu_Latn"])
