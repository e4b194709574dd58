"""A user's own corpus, end to end through the CLIs: FineWeb2 folders, compressed JSONL, a code stream, a label
mmBERT never had and languages of a few dozen documents -> tokenizer -> shards cut into units -> the folder
moved elsewhere -> `python -m mmbert_pl.run data.root=...` with the default config."""
from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.manifest import read_manifest
from tests.processes import run, run_env
from tests.in_process import command

FINEWEB2 = ["eng_Latn", "rus_Cyrl", "cmn_Hani", "hin_Deva", "tir_Ethi", "fao_Latn"]
SMALL = ["isl_Latn", "kan_Knda", "uig_Arab", "bel_Cyrl"]          # ~60 documents each, as the decay's small languages
UNLISTED = "qaa_Latn"                                              # ISO 639-3 "reserved for local use": in no mmBERT set


def build_corpus(folder: Path, sample: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    def documents(path: Path, chars: int = 160) -> list[str]:
        """The sample's articles cut into short documents, so that a language has dozens."""
        text = " ".join(path.read_text(encoding="utf-8").split())
        return [text[i : i + chars].strip() for i in range(0, len(text), chars)]

    lines = {p.stem: documents(p) for p in sample.glob("*_*.txt")}
    for label in FINEWEB2:
        docs = lines[label] * (6 if label == "eng_Latn" else 1)
        for split, part in (("train", docs[:-4]), ("test", docs[-4:])):
            (folder / label / split).mkdir(parents=True)
            table = pa.table({"id": [f"{label}-{i}" for i in range(len(part))], "text": part,
                              "url": [f"https://example.org/{i}" for i in range(len(part))], "language_score": [0.9] * len(part)})
            pq.write_table(table, folder / label / split / "000_00000.parquet", row_group_size=40)
    for label in SMALL:
        body = "".join(json.dumps({"text": t, "id": i}, ensure_ascii=False) + "\n" for i, t in enumerate(lines[label][:60]))
        (folder / f"{label}.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body.encode()))
    code = [p.read_text(encoding="utf-8") for p in sorted(Path("data_prep").glob("*.py")) if p.stat().st_size > 2000]
    with gzip.open(folder / "code_python.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in code)
    (folder / f"{UNLISTED}.txt").write_text("\n".join(lines["spa_Latn"][:40]) + "\n", encoding="utf-8")
    (folder / "smo_Latn.txt.gz").write_bytes(gzip.compress(lines["smo_Latn"][0].encode() + b"\n"))      # one document
    (folder / "README.md").write_text("A corpus in the layouts a user brings.\n")


@pytest.fixture(scope="module")
def own_shards(tmp_path_factory, sample_dir: Path) -> tuple[Path, Path]:
    """(the corpus, its shards moved away from where they were built, the original folder and tokenizer deleted)."""
    tmp = tmp_path_factory.mktemp("own")
    corpus = tmp / "corpus"
    build_corpus(corpus, sample_dir)
    tok = tmp / "tok" / "corpus.model"
    r = run([sys.executable, "-m", "data_prep.tokenizer", "train", "--input", str(corpus), "--out", str(tok),
             "--vocab-size", "3000", "--sample-chars", "400000"], "tokenizer training")
    assert r.returncode == 0, r.stderr
    built = tmp / "built"
    r = run([sys.executable, "-m", "data_prep.shards", "--input", str(corpus), "--tokenizer", str(tok), "--out", str(built),
             "--row-length", "128", "--workers", "2", "--unit-size", "8kb", "--no-progress"], "data_prep.shards")
    assert r.returncode == 0, r.stderr
    assert "smo_Latn" in r.stdout and "no val: 1 usable document(s): kept for training" in r.stdout, r.stdout
    moved = tmp / "moved"
    shutil.copytree(built, moved)
    shutil.rmtree(built)
    shutil.rmtree(tok.parent)
    return corpus, moved


def test_every_label_is_built_with_validation_rows_and_every_split_opens(own_shards: tuple[Path, Path]) -> None:
    from streaming import StreamingDataset

    _, shards = own_shards
    manifest = read_manifest(shards)
    labels = set(manifest["languages"])
    assert labels == {*FINEWEB2, *SMALL, UNLISTED, "code_python", "smo_Latn"}
    assert manifest["languages"]["eng_Latn"]["units"] > 1 and manifest["languages"]["eng_Latn"]["layout"] == "parquet"
    for label, entry in manifest["languages"].items():
        if label == "smo_Latn":
            assert entry["val"]["rows"] == 0 and "1 usable document" in entry["val_note"]
            assert not (shards / label / "val").exists()
        else:
            assert entry["val"]["rows"] >= 1, label
    for label in FINEWEB2:          # FineWeb2's test/ documents are the validation documents, and only they
        assert manifest["languages"][label]["val"]["docs"] == 4, label
    splits = sorted(p.parent for p in shards.glob("*/*/index.json"))
    assert len(splits) == 2 * len(labels) - 1
    for split in splits:
        ds = StreamingDataset(local=str(split), shuffle=False, batch_size=1)
        assert len(ds) == manifest["languages"][split.parent.name][split.name]["rows"] > 0


@pytest.mark.slow
def test_training_on_the_moved_folder_with_the_default_config(own_shards: tuple[Path, Path], tmp_path: Path) -> None:
    _, shards = own_shards
    env = run_env(tmp_path, tmp_path / "cache")
    r = command("mmbert_pl.run", [f"data.root={shards}", "trainer.max_steps=4", "trainer.progress_bar=false"], env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    labels = sorted(read_manifest(shards)["languages"])
    assert f"every label ({len(labels)} languages)" in r.stdout
    assert "retrieval during training is off" in r.stderr and "--parallel" in r.stderr
    assert "leaves out" not in r.stdout
    run_dir = tmp_path / "runs" / "sample"
    header = next(csv.reader(open(run_dir / "logs" / "metrics.csv")))
    assert {f"val/{k}/loss" for k in labels if k != "smo_Latn"} <= set(header)
    assert (run_dir / "hf" / "tokenizer.model").exists()
    # The run knows its data by content: the folder synced elsewhere is the same data (another one would be refused).
    copy = tmp_path / "synced"
    shutil.copytree(shards, copy)
    again = command("mmbert_pl.run", [f"data.root={copy}", "trainer.max_steps=4", "trainer.progress_bar=false"], env)
    assert again.returncode == 0 and "already finished at step 4" in again.stdout, again.stdout[-2000:] + again.stderr[-2000:]


def test_a_named_set_says_what_it_leaves_out(own_shards: tuple[Path, Path], tmp_path: Path) -> None:
    _, shards = own_shards
    env = run_env(tmp_path, tmp_path / "cache")
    r = command("mmbert_pl.plan", [f"data.root={shards}", "data.languages=pretrain", "trainer.max_steps=4"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if "leaves out" in x)
    # pretrain (60 languages + code) has English, Russian, Chinese, Hindi and the code stream, not the others.
    assert f"leaves out 8 of 13 labels of {shards}" in line and "data.languages=null" in line, line
    assert "code_python" in r.stdout.split(line)[1]


def test_unreadable_input_stops_before_any_work(tmp_path: Path, sample_dir: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(sample_dir / "eng_Latn.txt", corpus)
    (corpus / "deu_Latn.jsonl.zst").write_bytes(b"not zstd at all")
    r = subprocess.run([sys.executable, "-m", "data_prep.tokenizer", "train", "--input", str(corpus), "--out",
                        str(tmp_path / "t.model"), "--vocab-size", "400"], capture_output=True, text=True)
    assert r.returncode == 2 and "deu_Latn.jsonl.zst: not readable as jsonl" in r.stderr, r.stderr
    assert not (tmp_path / "t.model").exists()
