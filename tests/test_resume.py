"""Crashes and preemption cost nothing: runs killed (SIGKILL), preempted (SIGUSR1, SIGTERM) and resumed by
rerunning the same command end bitwise equal to an uninterrupted run and trained on the same rows."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ARGS = ["+stage=sample_cascade", "trainer.max_steps=36", "data.global_batch_rows=16", "callbacks.batch_warmup.share=0.25",
        "callbacks.checkpoint_every_n_steps=2", "callbacks.keep_last_checkpoints=2", "callbacks.sample_log=true",
        "callbacks.retrieval.every=null", "trainer.val_check_interval=1000", "trainer.progress_bar=false"]


def env_for(tmp: Path, cache: Path) -> dict:
    return {**os.environ, "MMBERT_RUNS": str(tmp / "runs"), "MMBERT_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


def launch(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mmbert_pl.run", *args], env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def logged(samples: Path) -> list[list[str]]:
    path = samples / "rank0.tsv"
    return [line.split("\t") for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_step(proc: subprocess.Popen, samples: Path, step: int, timeout: float = 300) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if any(int(row[0]) >= step for row in logged(samples)):
            return
        assert proc.poll() is None, f"the run ended before step {step}"
        time.sleep(0.01)
    raise AssertionError(f"no step {step} within {timeout} s")


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache: Path) -> Path:
    tmp = tmp_path_factory.mktemp("whole")
    result = subprocess.run([sys.executable, "-m", "mmbert_pl.run", *ARGS], env=env_for(tmp, cache), capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return tmp / "runs" / "tiny-sample_cascade"


def test_kills_and_signals_at_three_points_resume_exactly(uninterrupted: Path, cache: Path, tmp_path: Path) -> None:
    rows = logged(uninterrupted / "samples")
    micro = {}
    for step, m, segment, _ in rows:
        micro.setdefault(int(step), []).append(int(segment))
    warmup_end = min(s for s, ms in micro.items() if len(ms) == 2)            # the first full-batch step
    milestone = min(s for s, ms in micro.items() if ms[0] == 1)               # the first step of segment 2
    second = min(s for s, ms in micro.items() if ms[0] == 2)
    assert 4 <= warmup_end < milestone < second - 4, (warmup_end, milestone, second)

    env, run_dir = env_for(tmp_path, cache), tmp_path / "runs" / "tiny-sample_cascade"
    samples = run_dir / "samples"
    plan = [(warmup_end // 2, signal.SIGUSR1), (milestone + 1, signal.SIGKILL), ((milestone + second) // 2, signal.SIGTERM)]
    for n, (step, sig) in enumerate(plan):
        proc = launch(ARGS, env, tmp_path / f"log{n}.txt")
        wait_for_step(proc, samples, step)
        sent = time.time()
        os.killpg(proc.pid, sig)
        code = proc.wait(timeout=60)
        out = (tmp_path / f"log{n}.txt").read_text()
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL
        else:
            assert code == 3, out[-3000:]
            assert time.time() - sent < 10, "a preempted run must stop within seconds"
            assert f"{sig.name}: saved" in out and "rerun the same command to resume" in out
            saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
            assert saved["global_step"] >= step            # the step it was in, not an older periodic checkpoint
        assert not list((run_dir / "checkpoints").glob("*.tmp")), "a temporary checkpoint was left behind"

    # The newest checkpoint is truncated (a crash mid-copy on a network filesystem): reported, the previous one used.
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    final = subprocess.run([sys.executable, "-m", "mmbert_pl.run", *ARGS], env=env, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-3000:]
    assert "last.ckpt is unreadable" in final.stdout and "resuming from" in final.stdout

    assert logged(samples) == rows                         # every step's rows: nothing lost, nothing repeated
    want, got = weights(uninterrupted), weights(run_dir)
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want), [k for k in want if not torch.equal(want[k], got[k])][:3]
