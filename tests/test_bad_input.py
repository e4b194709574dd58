"""docs/bad_input.md, case by case, through the real command lines: the message each prints (checked against
the table) and that nothing already written is lost. Full and read-only disks are real: a small tmpfs that the
test mounts (it needs root or CAP_SYS_ADMIN, as on CI; elsewhere these cases are skipped and say why)."""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from data_prep.manifest import read_manifest
from tests.in_process import command

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad_input.md"
SAMPLE = Path(__file__).resolve().parents[1] / "mmbert_pl" / "sample" / "ntrex"
RUN = ["trainer.progress_bar=false"]


def documented() -> dict[str, str]:
    """Case id -> the message column of docs/bad_input.md."""
    cases = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 5 and cells[0].startswith("`") and cells[0] != "id":
            message = cells[3]
            message = message[3:-3] if message.startswith("`` ") else message[1:-1]
            cases[cells[0].strip("`")] = message
    return cases


def assert_documented(case: str, output: str) -> None:
    """The documented message of `case`, with `…` matching any text, occurs in `output`."""
    pattern = ".*?".join(re.escape(part) for part in documented()[case].split("…"))
    assert re.search(pattern, output), f"{case}: the output does not show the message in {DOC.name}:\n{output[-2000:]}"


def test_every_documented_case_has_its_test() -> None:
    names = set(globals())
    assert documented(), DOC
    assert [c for c in documented() if f"test_{c}" not in names] == []


def cli(cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """A command in its own process (`cmd` starts with the program)."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})


def run(args: list[str], env: dict, module: str = "mmbert_pl.run") -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS`, run in this process: what it prints, writes and exits with is what these cases check."""
    return command(module, args, {**os.environ, **env})


@pytest.fixture
def runs(tmp_path: Path) -> dict:
    """Environment of a run with an empty runs folder and an empty cache (give data.root to skip preparing the sample)."""
    return {"MMBERT_RUNS": str(tmp_path / "runs"), "MMBERT_CACHE": str(tmp_path / "cache")}


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); needs root or CAP_SYS_ADMIN")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "14m")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def remount(disk: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(disk)], check=True)


def test_config_value(tmp_path: Path, runs: dict) -> None:
    result = run([*RUN, "data.global_batch_rows=3"], runs)
    assert result.returncode == 2 and result.stderr.startswith("error: invalid config:")
    assert_documented("config_value", result.stderr)
    assert not (tmp_path / "runs").exists()


def test_config_key(tmp_path: Path, runs: dict) -> None:
    result = run([*RUN, "trainer.max_step=5"], runs)
    assert result.returncode == 1
    assert_documented("config_key", result.stderr)
    assert not (tmp_path / "runs").exists()


def test_data_root_missing(tmp_path: Path, runs: dict) -> None:
    result = run([*RUN, f"data.root={tmp_path / 'nowhere'}"], runs)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert_documented("data_root_missing", result.stderr)
    assert not (tmp_path / "runs").exists()


def test_data_root_random_bytes(tmp_path: Path, runs: dict) -> None:
    root = tmp_path / "shards"
    root.mkdir()
    (root / "manifest.json").write_bytes(bytes(range(256)) * 4)
    result = run([*RUN, f"data.root={root}"], runs)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert_documented("data_root_random_bytes", result.stderr)
    assert str(root / "manifest.json") in result.stderr
    assert os.listdir(root) == ["manifest.json"] and not (tmp_path / "runs").exists()


def test_folder_in_use(tmp_path: Path, runs: dict, shard_dir: Path) -> None:
    """A real lock, held by this process as a run would hold it."""
    run_dir = tmp_path / "runs" / "sample"
    run_dir.mkdir(parents=True)
    (run_dir / "mixture.json").write_text("{}")
    with open(run_dir / "run.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write(f"PID {os.getpid()} on host {socket.gethostname()}\n")
        held.flush()
        result = run([*RUN, f"data.root={shard_dir}"], runs)
    assert result.returncode == 2
    assert_documented("folder_in_use", result.stderr)
    assert f"PID {os.getpid()} on host {socket.gethostname()}" in result.stderr
    assert sorted(os.listdir(run_dir)) == ["mixture.json", "run.lock"] and (run_dir / "mixture.json").read_text() == "{}"


@pytest.mark.slow
def test_disk_full_training(small_disk: Path, runs: dict, shard_dir: Path) -> None:
    """Checkpoints of `tiny` are 5 MB: steps 4 and last.ckpt fit on 14 MB, the save at step 8 does not."""
    args = [*RUN, f"runs_dir={small_disk}", f"data.root={shard_dir}", "trainer.max_steps=12", "callbacks.checkpoint_every_n_steps=4",
            "callbacks.keep_last_checkpoints=3", "callbacks.retrieval.every=null", "trainer.limit_val_batches=0"]
    full = run(args, runs)
    assert full.returncode == 2, full.stderr[-3000:]
    assert_documented("disk_full_training", full.stderr)
    assert full.stderr.count("error:") == 1 and "Traceback" not in full.stderr
    ckpts = small_disk / "sample" / "checkpoints"
    assert not list(ckpts.glob("*.tmp")), "a temporary checkpoint was left on the full disk"
    for name in ("step0000004.ckpt", "last.ckpt"):
        assert torch.load(ckpts / name, map_location="cpu", weights_only=False)["global_step"] == 4
    remount(small_disk, "size=64m")
    again = run(args, runs)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout and "finished at step 12" in again.stdout


def test_read_only_runs_dir(small_disk: Path, runs: dict, shard_dir: Path) -> None:
    remount(small_disk, "ro")
    result = run([*RUN, f"runs_dir={small_disk}", f"data.root={shard_dir}"], runs)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert_documented("read_only_runs_dir", result.stderr)


def test_permission_denied(tmp_path: Path, runs: dict, shard_dir: Path) -> None:
    """As root (CI), a folder of mode 0555 is writable; without the capability to override that, it is not."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("as root this needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    closed = tmp_path / "closed"
    closed.mkdir()
    closed.chmod(0o555)
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]
    drop = drop if os.geteuid() == 0 else []
    result = cli([*drop, sys.executable, "-m", "mmbert_pl.run", *RUN, f"runs_dir={closed}", f"data.root={shard_dir}"], runs)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert_documented("permission_denied", result.stderr)
    assert os.listdir(closed) == []


def build_shards_cli(source: Path, tokenizer: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli([sys.executable, "-m", "data_prep.shards", "--input", str(source), "--tokenizer", str(tokenizer),
                "--out", str(out), "--row-length", "512", "--no-progress", *extra])


def test_disk_full_data_prep(tmp_path: Path, tokenizer_model: Path) -> None:
    """The sample's shards take 1.8 MB; the disk has 1."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "1m")
    try:
        out = disk / "shards"
        full = build_shards_cli(SAMPLE, tokenizer_model, out, "--workers", "2")
        assert full.returncode == 2, full.stderr[-3000:]
        assert_documented("disk_full_data_prep", full.stderr)
        assert full.stderr.count("error:") == 1 and "Traceback" not in full.stderr
        assert not list(out.glob(".tmp-*")), "a partial language folder was left on the full disk"
        manifest = read_manifest(out)
        done = set(manifest["languages"]) if manifest else set()
        assert all((out / label / "train" / "index.json").exists() for label in done)
        remount(disk, "size=64m")
        again = build_shards_cli(SAMPLE, tokenizer_model, out, "--workers", "2")
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(read_manifest(out)["languages"]) == len(list(SAMPLE.glob("*.txt")))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_nul_bytes(tmp_path: Path, tokenizer_model: Path) -> None:
    source = tmp_path / "text"
    source.mkdir()
    lines = (SAMPLE / "eng_Latn.txt").read_text().splitlines()
    lines[3], lines[7] = "binary\0data", "\0"
    (source / "eng_Latn.txt").write_text("\n".join(lines) + "\n")
    result = build_shards_cli(source, tokenizer_model, tmp_path / "shards")
    assert result.returncode == 0, result.stderr
    assert_documented("nul_bytes", result.stdout)
    entry = read_manifest(tmp_path / "shards")["languages"]["eng_Latn"]
    assert entry["bad"]["with_nul_bytes"] == 2
    assert entry["train"]["docs"] + entry["val"]["docs"] == len(lines) - 2


def test_tokenizer_without_roles(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bare = Tokenizer(models.BPE())
    bare.pre_tokenizer = pre_tokenizers.ByteLevel()
    bare.train_from_iterator((SAMPLE / "eng_Latn.txt").read_text().splitlines()[:100], trainers.BpeTrainer(vocab_size=300, show_progress=False))
    bare.save(str(tmp_path / "tokenizer.json"))
    result = build_shards_cli(SAMPLE, tmp_path / "tokenizer.json", tmp_path / "shards")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert_documented("tokenizer_without_roles", result.stderr)
    assert not (tmp_path / "shards").exists()


def test_vocab_too_large(tmp_path: Path) -> None:
    out = tmp_path / "tok.model"
    result = cli([sys.executable, "-m", "data_prep.tokenizer", "train", "--input", str(SAMPLE), "--out", str(out),
                  "--vocab-size", "900000", "--sample-chars", "200000"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert_documented("vocab_too_large", result.stderr)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_merge_out_not_empty(tmp_path: Path) -> None:
    out = tmp_path / "merged"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = run(["average", "--models", "a.ckpt", "b.ckpt", "--out", str(out)], {}, "mmbert_pl.merge")
    assert result.returncode == 2
    assert_documented("merge_out_not_empty", result.stderr)
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
