"""Shards from the bundled sample: format, accounting, efficiency, resumability, bad input."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from data_prep.manifest import read_manifest
from data_prep.shards import ShardSettings, build_shards
from data_prep.tokenizer_training import train_tokenizer
from tests.processes import LIMIT, wait_exit, wait_until
from tests.shard_rows import rows_of


def test_streaming_reads_our_shards_without_our_code(shard_dir: Path, tokenizer_model: Path) -> None:
    from streaming import StreamingDataset

    manifest = read_manifest(shard_dir)
    for label in ("eng_Latn", "tir_Ethi"):
        ds = StreamingDataset(local=str(shard_dir / label), split="train", shuffle=False, batch_size=1)
        assert len(ds) == manifest["languages"][label]["train"]["rows"]
        tokens = 0
        for row in ds:
            ids, cu = row["input_ids"], row["cu_seqlens"]
            assert ids.dtype == np.uint32 and ids.shape == (1024,)
            assert cu[0] == 0 and np.all(np.diff(cu) > 0) and np.all(ids[cu[-1]:] == 0)
            assert np.all(ids[: cu[-1]] < 4096)
            tokens += int(cu[-1])
        assert tokens == manifest["languages"][label]["train"]["tokens"]


def test_manifest_accounts_for_every_document(shard_dir: Path, sample_dir: Path, tokenizer_model: Path) -> None:
    manifest = read_manifest(shard_dir)
    assert manifest["row_length"] == 1024 and len(manifest["languages"]) == 40
    assert manifest["tokenizer"]["vocab_size"] == 4096
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    for label, entry in manifest["languages"].items():
        docs = (sample_dir / f"{label}.txt").read_text(encoding="utf-8").splitlines()
        assert entry["train"]["docs"] + entry["val"]["docs"] == len(docs)
        expected = sum(len(ids) + 2 for ids in sp.encode(docs))
        assert entry["train"]["tokens"] + entry["val"]["tokens"] + entry["dropped_tail_tokens"] == expected
        assert entry["train"]["packing_efficiency"] >= 0.99, label
    assert any(e["val"]["rows"] > 0 for e in manifest["languages"].values())


def test_rerun_skips_complete_languages(shard_dir: Path, tokenizer_model: Path, sample_dir: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in shard_dir.rglob("*.mds*")}
    build_shards(sample_dir, tokenizer_model, shard_dir, ShardSettings(row_length=1024, val_fraction=0.1), show_progress=False)
    assert {p: p.stat().st_mtime_ns for p in shard_dir.rglob("*.mds*")} == before


def shard_files(root: Path) -> dict[str, bytes]:
    """Every index.json and shard file under a shard folder, by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and (p.name == "index.json" or ".mds" in p.name)}


@pytest.mark.slow
def test_killed_run_resumes_its_units_and_writes_the_same_bytes(tmp_path: Path, tokenizer_model: Path, sample_dir: Path) -> None:
    text = tmp_path / "text"              # the sample, English 100 times over (7.6 MB): ~30 units of 256 kB
    text.mkdir()
    for f in sample_dir.glob("*_*.txt"):
        (text / f.name).write_text(f.read_text(encoding="utf-8") * (100 if f.stem == "eng_Latn" else 1), encoding="utf-8")
    cmd = [sys.executable, "-m", "data_prep.shards", "--input", str(text), "--tokenizer", str(tokenizer_model), "--workers", "2",
           "--row-length", "256", "--val-fraction", "0.1", "--no-progress", "--shard-size", "64kb", "--unit-size", "256kb"]
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    assert subprocess.run([*cmd, "--out", str(reference)], capture_output=True).returncode == 0
    assert read_manifest(reference)["languages"]["eng_Latn"]["units"] >= 20
    proc = subprocess.Popen([*cmd, "--out", str(interrupted)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished = lambda: list(interrupted.glob(".units/eng_Latn/*/unit.json"))         # noqa: E731
    wait_until("4 finished units of English", lambda: len(finished()) >= 4, proc)
    seen = len(finished())
    proc.send_signal(signal.SIGKILL)
    wait_exit(proc, "the killed data_prep run")
    assert not (interrupted / "eng_Latn").exists(), "the kill must land before English is assembled"
    rerun = subprocess.run([*cmd, "--out", str(interrupted)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    reused = int(rerun.stderr.split("reusing ")[1].split()[0])
    assert reused >= seen, rerun.stderr
    assert not list(interrupted.glob(".tmp-*")) and not (interrupted / ".units").exists()
    assert shard_files(interrupted) == shard_files(reference)
    assert read_manifest(interrupted)["languages"] == read_manifest(reference)["languages"]


def children_of(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_two_workers_write_what_one_writes(tmp_path: Path, tokenizer_model: Path, sample_dir: Path) -> None:
    langs = ["eng_Latn", "fao_Latn", "tir_Ethi", "cmn_Hani", "rus_Cyrl", "tha_Thai"]
    settings = ShardSettings(row_length=256, val_fraction=0.1)
    one = build_shards(sample_dir, tokenizer_model, tmp_path / "one", settings, workers=1, languages=langs, show_progress=False)
    two = build_shards(sample_dir, tokenizer_model, tmp_path / "two", settings, workers=2, languages=langs, show_progress=False)
    assert one["languages"] == two["languages"] and rows_of(tmp_path / "one") == rows_of(tmp_path / "two")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from Linux /proc")
def test_dead_worker_is_reported_and_killed_parent_takes_its_workers(tmp_path: Path, tokenizer_model: Path, sample_dir: Path) -> None:
    big = tmp_path / "big"                # two languages of seconds each, one per worker
    big.mkdir()
    for label in ("eng_Latn", "rus_Cyrl"):
        (big / f"{label}.txt").write_text((sample_dir / f"{label}.txt").read_text(encoding="utf-8") * 300, encoding="utf-8")
    cmd = [sys.executable, "-m", "data_prep.shards", "--input", str(big), "--tokenizer", str(tokenizer_model),
           "--row-length", "256", "--workers", "2", "--no-progress"]

    def start(out: Path) -> tuple[subprocess.Popen, list[int]]:
        proc = subprocess.Popen([*cmd, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # each worker has taken its language (its temporary folder is there): a worker killed before it took one
        # would leave both to the other, and the run would succeed
        wait_until("both languages in progress", lambda: all((out / f".tmp-{k}").is_dir() for k in ("eng_Latn", "rus_Cyrl")), proc)
        workers = children_of(proc.pid)
        assert len(workers) == 2 and proc.poll() is None, "both languages must still be in progress"
        return proc, workers

    # A worker killed (as the OOM killer would): one clear error, the other worker stopped, and a rerun completes.
    proc, workers = start(tmp_path / "a")
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=LIMIT)
    assert proc.returncode == 1 and "a data_prep worker died (exit code -9" in err and "Traceback" not in err, err
    assert not any(alive(w) for w in workers)
    assert subprocess.run([*cmd, "--out", str(tmp_path / "a")], capture_output=True).returncode == 0
    assert sorted(read_manifest(tmp_path / "a")["languages"]) == ["eng_Latn", "rus_Cyrl"]
    # The parent killed: its workers go with it at once, not after their current language, so nothing keeps
    # writing into the folder a rerun will use.
    proc, workers = start(tmp_path / "b")
    proc.kill()
    wait_exit(proc, "the killed parent")
    wait_until("the workers to die with their parent", lambda: not any(alive(w) for w in workers), limit=30)
    assert not (tmp_path / "b" / "eng_Latn").exists() and not (tmp_path / "b" / "rus_Cyrl").exists()


def write_layout(folder: Path, name: str, label: str, lines: list[str]) -> None:
    """`lines` as one file of `label` in input layout `name` (one document per line or record)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    jsonl = "".join(json.dumps({"text": t, "id": i, "url": f"https://example.org/{i}"}) + "\n" for i, t in enumerate(lines))
    if name == "fineweb2":
        (folder / label / "train").mkdir(parents=True)
        pq.write_table(pa.table({"id": list(range(len(lines))), "text": lines}), folder / label / "train" / "000_00000.parquet")
        return
    if name == "parquet":
        pq.write_table(pa.table({"text": lines, "lang": [label] * len(lines)}), folder / f"{label}.parquet")
        return
    data = {"txt": text, "jsonl": jsonl}[name.split(".")[0]].encode()
    if name.endswith(".gz"):
        data = gzip.compress(data)
    elif name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    (folder / f"{label}.{name}").write_bytes(data)


LAYOUTS = ("txt", "txt.gz", "txt.zst", "jsonl", "jsonl.gz", "jsonl.zst", "parquet", "fineweb2")


def test_input_layouts_give_identical_shards(tmp_path: Path, tokenizer_model: Path, sample_dir: Path) -> None:
    docs = {label: (sample_dir / f"{label}.txt").read_text(encoding="utf-8").splitlines() for label in ("fao_Latn", "tir_Ethi")}
    results = {}
    for name in LAYOUTS:
        for label, lines in docs.items():
            write_layout(tmp_path / name, name, label, lines)
        out = tmp_path / f"out-{name}"
        build_shards(tmp_path / name, tokenizer_model, out, ShardSettings(row_length=256, val_fraction=0.1), show_progress=False)
        results[name] = (rows_of(out), {k: (e["train"], e["val"]) for k, e in read_manifest(out)["languages"].items()})
    assert all(results[name] == results["txt"] for name in LAYOUTS), [n for n in LAYOUTS if results[n] != results["txt"]]
    assert all(results["txt"][0][label] for label in docs)


def test_bad_records_are_counted_and_skipped(tmp_path: Path, tokenizer_model: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "eng_Latn.txt").write_bytes(b"good one\n\n   \nbad \xff\xfe bytes\n" + b"x" * 5000 + b"\nanother good one\n")
    (src / "fao_Latn.txt").write_bytes(b"")
    (src / "deu_Latn.jsonl").write_text('{"text": "gut"}\n{"text": "nul\\u0000byte"}\n')
    (src / "README.md").write_text("ignored")
    manifest = build_shards(src, tokenizer_model, tmp_path / "out", ShardSettings(row_length=64, val_fraction=0.0, max_chars=1000), show_progress=False)
    bad = manifest["languages"]["eng_Latn"]["bad"]
    assert bad == {"undecodable": 1, "with_nul_bytes": 0, "empty": 2, "too_long": 1, "empty_files": 0}
    assert manifest["languages"]["eng_Latn"]["train"]["docs"] == 2
    assert "fao_Latn" not in manifest["languages"] and "1 empty_files" in manifest["empty"]["fao_Latn"]
    assert not (tmp_path / "out" / "fao_Latn").exists()
    assert manifest["languages"]["deu_Latn"]["bad"]["with_nul_bytes"] == 1
    assert manifest["languages"]["deu_Latn"]["train"]["docs"] == 1


def test_txt_lines_as_bytes_are_the_lines_as_text(tmp_path: Path) -> None:
    from data_prep.readers import BadInput, InputFile, file_records

    f = tmp_path / "jpn_Jpan.txt"
    f.write_bytes("  a b \n\u3000全角\u3000\n\xa0\n\n".encode() + b"\xff\xfe\n" + "crlf\r\n".encode() + b"x" * 50 + b"\n")
    source = InputFile(f, "txt")
    as_bytes, as_text = BadInput(), BadInput()
    raw = list(file_records(source, as_bytes, max_chars=20, utf8=True))
    assert [(i, t.decode()) for i, t in raw] == list(file_records(source, as_text, max_chars=20)) == [(0, "a b"), (1, "全角"), (5, "crlf")]
    assert as_bytes == as_text == BadInput(undecodable=1, empty=2, too_long=1)


def test_clear_errors_before_any_work(tmp_path: Path, tokenizer_model: Path, sample_dir: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "data_prep.shards", *args], capture_output=True, text=True)

    base = ["--tokenizer", str(tokenizer_model), "--row-length", "256"]
    bad_name = tmp_path / "bad_name"
    bad_name.mkdir()
    (bad_name / "english.txt").write_text("hello\n")
    r = cli("--input", str(bad_name), "--out", str(tmp_path / "o1"), *base)
    assert r.returncode == 2 and "english.txt" in r.stderr and "<iso639-3>_<Script>" in r.stderr
    assert not (tmp_path / "o1").exists()

    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "eng_Latn.csv.bz2").write_text("x")
    (unknown / "fra_Latn.tsv").write_text("x\ty\n")
    (unknown / "deu_Latn" / "train").mkdir(parents=True)
    (unknown / "deu_Latn" / "train" / "part.csv").write_text("x")
    (unknown / "code_python.jsonl").write_text('{"content": "print(1)"}\n')
    (unknown / "README.md").write_text("documentation is skipped")
    r = cli("--input", str(unknown), "--out", str(tmp_path / "o2"), *base)
    assert r.returncode == 2 and "5 input problem(s)" in r.stderr, r.stderr
    for named in ("eng_Latn.csv.bz2: not a data file", "fra_Latn.tsv: not a data file", "part.csv: only *.parquet",
                  "deu_Latn: no train/*.parquet", "code_python.jsonl: its first record has no 'text' field (fields: ['content'])"):
        assert named in r.stderr, (named, r.stderr)
    assert not (tmp_path / "o2").exists()

    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli("--input", str(sample_dir), "--out", str(blocker / "sub"), *base)
    assert r.returncode == 2 and "not writable" in r.stderr

    out = tmp_path / "o3"
    assert cli("--input", str(sample_dir), "--out", str(out), "--languages", "fao_Latn", *base, "--no-progress").returncode == 0
    one_language = tmp_path / "one_language"
    one_language.mkdir()
    shutil.copy(sample_dir / "fao_Latn.txt", one_language)
    other = train_tokenizer(one_language, tmp_path / "other.model", vocab_size=400).path
    r = cli("--input", str(sample_dir), "--out", str(out), "--tokenizer", str(other), "--row-length", "256")
    assert r.returncode == 2 and "another tokenizer" in r.stderr
    r = cli("--input", str(sample_dir), "--out", str(out), *base[:2], "--row-length", "512")
    assert r.returncode == 2 and "256" in r.stderr
    assert list(read_manifest(out)["languages"]) == ["fao_Latn"]
