"""A model folder as the Hub ships it (tokenizer.json, pytorch_model.bin, its own special ids) in every tool."""
from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from data_prep.shards import ShardSettings, build_shards
from data_prep.tokenizer import load_tokenizer
from tests.in_process import command
from tests.released_folders import modernbert_tokenizer, mmbert_tokenizer, released_folder

TEXTS = ["Welsh AMs worried about 'looking like muppets'", "Ελληνικά 12345 ፊደል", "Þetta er stutt setning á íslensku.",
         "  two  spaces\tand a tab", "日本語のテキスト"]


@pytest.fixture(scope="module")
def modernbert_dir(tmp_path_factory, sample_dir: Path) -> Path:
    return modernbert_tokenizer(sample_dir, tmp_path_factory.mktemp("modernbert-tokenizer")).parent


def test_tokenizer_json_gives_its_own_special_ids(modernbert_dir: Path) -> None:
    """ModernBERT's layout: [CLS] … [SEP] framing, specials after the ordinary pieces, [unused] padding to 64."""
    from transformers import AutoTokenizer

    tok = load_tokenizer(modernbert_dir)          # a folder gives its tokenizer.json
    vocab = tok.tok.get_vocab(with_added_tokens=True)
    s = tok.specials
    assert (s.unk, s.bos, s.eos, s.pad, s.mask) == tuple(vocab[t] for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"))
    assert min(s.unk, s.bos, s.eos, s.pad, s.mask) >= 1000 and tok.vocab_size % 64 == 0
    ordinary = set(tok.ordinary_ids())
    assert not ordinary & {s.unk, s.bos, s.eos, s.pad, s.mask} and not any(vocab[t] in ordinary for t in vocab if "unused" in t)
    assert len(ordinary) == s.unk                 # every trained piece, nothing else
    theirs = AutoTokenizer.from_pretrained(modernbert_dir)
    assert (theirs.cls_token_id, theirs.sep_token_id, theirs.pad_token_id, theirs.mask_token_id) == (s.bos, s.eos, s.pad, s.mask)
    framed = tok.encode_framed([t.encode() for t in TEXTS])
    for text, ids, arr, (span_ids, spans) in zip(TEXTS, tok.encode(TEXTS), framed, tok.encode_with_spans(TEXTS)):
        assert theirs(text)["input_ids"] == tok.frame(ids) == arr.tolist()
        assert span_ids == ids and spans == sorted(spans)        # pieces of one character (byte-level) share its span
        assert {i for a, b in spans for i in range(a, b)} == set(range(len(text)))


def test_gemma_tokenizer_json_equals_its_sentencepiece_model(tokenizer_model: Path, sample_dir: Path, tmp_path: Path) -> None:
    """mmBERT ships Gemma's tokenizer only as tokenizer.json: the same ids, specials and ordinary pieces as the .model."""
    json_tok = load_tokenizer(mmbert_tokenizer(tokenizer_model, tmp_path / "mmbert"))
    spm_tok = load_tokenizer(tokenizer_model)
    assert json_tok.specials == spm_tok.specials and json_tok.vocab_size == spm_tok.vocab_size
    assert json_tok.ordinary_ids() == spm_tok.ordinary_ids()
    lines = [line for f in sorted(sample_dir.glob("*.txt")) for line in f.read_text(encoding="utf-8").splitlines()[:3]] + TEXTS
    assert json_tok.encode(lines) == spm_tok.encode(lines)
    assert [a.tolist() for a in json_tok.encode_framed(lines)] == [a.tolist() for a in spm_tok.encode_framed(lines)]
    # shards of one language are the same rows either way
    spm_out, json_out = tmp_path / "spm", tmp_path / "json"
    for tok, out in ((tokenizer_model, spm_out), (json_tok.path.parent, json_out)):
        build_shards(sample_dir, tok, out, ShardSettings(row_length=256), languages=["fao_Latn"], show_progress=False)
    entries = [json.loads((out / "manifest.json").read_text()) for out in (spm_out, json_out)]
    assert entries[0]["languages"] == entries[1]["languages"] and entries[1]["tokenizer"]["path"] == "tokenizer.json"
    assert sorted(p.name for p in json_out.iterdir() if p.is_file()) == ["manifest.json", "special_tokens_map.json",
                                                                         "tokenizer.json", "tokenizer_config.json"]


def test_a_folder_without_a_tokenizer_is_refused(tmp_path: Path) -> None:
    """A tokenizer without mask, pad or framing: tests/test_bad_input.py::test_tokenizer_without_roles."""
    with pytest.raises(ValueError, match="holds neither tokenizer.model nor tokenizer.json"):
        load_tokenizer(tmp_path)
    r = command("data_prep.tokenizer", ["check", str(tmp_path)])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "holds neither" in r.stderr


def cli(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` in `cwd`, run in this process."""
    env = {**os.environ, "MMBERT_RUNS": str(cwd / "runs"), "MMBERT_CACHE": str(cwd / "cache")}
    return command(module, list(args), env, cwd)


def mlm_loss(csv_path: Path) -> float:
    return next(float(r["loss"]) for r in csv.DictReader(csv_path.open()) if r["language"] == "macro")


@pytest.mark.slow
def test_continue_finetune_and_evaluate_a_released_modernbert(modernbert_dir: Path, sample_dir: Path, tmp_path: Path) -> None:
    """The README's "Start from a released model", end to end on a ModernBERT-shaped release: shards with its
    tokenizer, `evaluate mlm`, `+stage=continue` with no model= (the shape is the folder's: 3 layers, a vocabulary
    padded 64 beyond the tokenizer's), `evaluate mlm` again, fine-tuning the result; exports keep its tokenizer."""
    from transformers import AutoTokenizer

    tok = load_tokenizer(modernbert_dir)
    release = released_folder(tok.path, tmp_path / "release", vocab_size=tok.vocab_size + 64, num_layers=3,
                              global_rope_theta=160000.0, local_rope_theta=160000.0)
    assert (release / "pytorch_model.bin").exists() and not (release / "model.safetensors").exists()
    shards = tmp_path / "shards"
    r = cli("data_prep.shards", "--input", str(sample_dir), "--tokenizer", str(release), "--out", str(shards),
            "--row-length", "128", "--languages", "eng_Latn,deu_Latn,isl_Latn,fao_Latn", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = cli("mmbert_pl.evaluate", "mlm", "--model", str(release), "--data", str(shards), "--out", str(tmp_path / "before"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = cli("mmbert_pl.run", "+stage=continue", f"init_from={release}", "init_weights_only=true", f"data.root={shards}",
            "trainer.max_tokens=40000", "data.micro_batch=4", "optimizer.lr=2e-3", "callbacks.retrieval.every=null",
            "trainer.progress_bar=false", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    export = tmp_path / "runs" / "continue" / "hf"
    config, released = (json.loads((d / "config.json").read_text()) for d in (export, release))
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "local_attention", "pad_token_id",
                "cls_token_id", "sep_token_id", "mask_token_id"):
        assert config[key] == released[key], key
    assert config["num_hidden_layers"] == 3 and config["mask_token_id"] == tok.specials.mask
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (export / name).read_bytes() == (release / name).read_bytes(), name
    lines = [line for f in sorted(sample_dir.glob("*.txt"))[:20] for line in f.read_text(encoding="utf-8").splitlines()[:2]]
    assert AutoTokenizer.from_pretrained(export)(lines)["input_ids"] == AutoTokenizer.from_pretrained(release)(lines)["input_ids"]
    r = cli("mmbert_pl.evaluate", "mlm", "--model", str(export), "--data", str(shards), "--out", str(tmp_path / "after"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert mlm_loss(tmp_path / "after" / "mlm.csv") < mlm_loss(tmp_path / "before" / "mlm.csv") - 0.3
    r = cli("mmbert_pl.finetune", "progress_bar=false", f"encoder={export}", "task=langid", "epochs=1", "langid.per_language=8",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "runs" / "finetune-langid" / "hf" / "tokenizer.json").read_bytes() == (release / "tokenizer.json").read_bytes()
    # model= that disagrees with the folder, and a model vocabulary smaller than the tokenizer's, are refused
    r = cli("mmbert_pl.run", "+stage=continue", "model=tiny", f"init_from={release}", "init_weights_only=true",
            f"data.root={shards}", "trainer.max_tokens=40000", "experiment=named", cwd=tmp_path)
    assert r.returncode == 2 and "num_layers is 3 there, 4 here" in r.stderr and f"vocab_size is {tok.vocab_size + 64} there" in r.stderr
    small = released_folder(tok.path, tmp_path / "small-vocab", vocab_size=tok.vocab_size - 64, pad_id=0)
    r = cli("mmbert_pl.run", "+stage=continue", f"init_from={small}", "init_weights_only=true", f"data.root={shards}",
            "trainer.max_tokens=40000", "experiment=small", cwd=tmp_path)
    assert r.returncode == 2 and f"vocabulary of {tok.vocab_size - 64}, smaller than the shards' tokenizer's" in r.stderr
    assert not (tmp_path / "runs" / "named").exists() and not (tmp_path / "runs" / "small").exists()
