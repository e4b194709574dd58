"""Tokenizer training and checking."""
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

from data_prep.tokenizer import check_tokenizer
from data_prep.tokenizer_training import sample_sentences


def test_trained_tokenizer_has_gemma_special_ids(tokenizer_model: Path) -> None:
    info = check_tokenizer(tokenizer_model)
    assert (info.pad, info.eos, info.bos, info.unk, info.mask) == (0, 1, 2, 3, 4)
    assert info.vocab_size == 4096 and len(info.sha256) == 64
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    text = "ፊደል ትግርኛ 😀"
    assert sp.decode(sp.encode(text)) == text          # byte fallback: nothing becomes <unk>
    assert sp.unk_id() not in sp.encode(text)


def test_temperature_lifts_small_languages(sample_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"             # English 20 times the size of each of five other languages
    corpus.mkdir()
    (corpus / "eng_Latn.txt").write_text((sample_dir / "eng_Latn.txt").read_text() * 20)
    for label in ("fao_Latn", "isl_Latn", "tur_Latn", "fin_Latn", "pol_Latn"):
        (corpus / f"{label}.txt").write_text((sample_dir / f"{label}.txt").read_text())
    eng = set((sample_dir / "eng_Latn.txt").read_text().split("\n"))

    def english_share(tau: float) -> float:
        pieces = list(sample_sentences(corpus, tau, 400_000, seed=0))
        total = sum(map(len, pieces))
        assert 400_000 <= total < 400_000 + 6 * 2000          # the budget, give or take a chunk per language
        return sum(len(p) for p in pieces if any(p and p in e for e in eng)) / total

    assert english_share(1.0) > 0.7 > 0.4 > english_share(0.3)


def test_check_rejects_a_model_without_mask(tmp_path: Path, sample_dir: Path) -> None:
    prefix = tmp_path / "nomask"
    spm.SentencePieceTrainer.train(
        input=str(sample_dir / "eng_Latn.txt"), model_prefix=str(prefix), vocab_size=300,
        hard_vocab_limit=False, minloglevel=2,
    )
    with pytest.raises(ValueError, match="pad, mask"):
        check_tokenizer(f"{prefix}.model")
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        check_tokenizer(tmp_path / "junk.model")


def test_cli_check_and_help(tokenizer_model: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "data_prep.tokenizer", "check", str(tokenizer_model)], capture_output=True, text=True)
    assert out.returncode == 0 and "mask       4" in out.stdout
    for module in ("data_prep.tokenizer", "data_prep.shards"):
        assert subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True).returncode == 0
