"""Shards that travel are checked: data_prep writes each file's xxh64 into index.json, `python -m data_prep.verify`
names every missing, cut or damaged file, and training stops at a damaged shard with one line naming it."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.processes import run, run_env
from tests.in_process import command


def damaged_copy(shard_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shards with no decompressed files (as data_prep wrote it) and 64 bytes zeroed in the middle
    of German's first training shard: the same size, other bytes."""
    root = Path(shutil.copytree(shard_dir, tmp_path / "shards", ignore=shutil.ignore_patterns("*.mds")))
    shard = next((root / "deu_Latn" / "train").glob("shard.*.mds.zstd"))
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    shard.write_bytes(bytes(data))
    return root, shard


def verify(root: Path):
    return run([sys.executable, "-m", "data_prep.verify", str(root)], "data_prep.verify")


def test_every_shard_file_has_its_hash_in_the_index(shard_dir: Path) -> None:
    entries = [e for p in shard_dir.glob("*/*/index.json") for s in json.loads(p.read_text())["shards"]
               for e in (s["raw_data"], s["zip_data"])]
    assert entries and all(len(e["hashes"]["xxh64"]) == 16 for e in entries)


def test_verify_names_each_bad_file_and_the_fix(shard_dir: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(shard_dir, tmp_path / "intact"))
    ok = verify(root)
    assert ok.returncode == 0 and "shard files intact" in ok.stdout, ok.stderr
    root, damaged = damaged_copy(shard_dir, tmp_path)
    cut = next((root / "fra_Latn" / "train").glob("shard.*.mds.zstd"))
    cut.write_bytes(cut.read_bytes()[:-10])
    missing = next((root / "eng_Latn" / "val").glob("shard.*.mds.zstd"))
    missing.unlink()
    bad = verify(root)
    assert bad.returncode == 2, bad.stdout
    lines = bad.stderr.splitlines()
    assert f"error: {damaged}: damaged (xxh64 differs from index.json)" in lines
    assert any(line.startswith(f"error: {cut}: ") and "index.json says" in line for line in lines)
    assert f"error: {missing}: missing" in lines
    assert lines[-1].startswith("3 bad of ") and "copy those files again" in lines[-1]
    assert "no manifest.json" in verify(tmp_path).stderr


@pytest.mark.slow
def test_training_stops_at_a_damaged_shard_naming_it(shard_dir: Path, tmp_path: Path) -> None:
    root, damaged = damaged_copy(shard_dir, tmp_path)
    result = command("mmbert_pl.run", [f"data.root={root}", "data.languages=[deu_Latn]", "trainer.max_steps=2",
                                       "callbacks.retrieval.every=null", "trainer.progress_bar=false"], run_env(tmp_path, tmp_path / "cache"))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {damaged} is damaged (its xxh64 is not the one its index.json records): copy it again from "
                      f"where the shards were built, or rebuild them; `python -m data_prep.verify {root}` checks every file"]
    assert "Traceback" not in result.stderr
