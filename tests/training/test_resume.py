"""Crashes and preemption cost nothing: runs killed (SIGKILL), preempted (SIGUSR1, SIGTERM) and resumed by
rerunning the same command end bitwise equal to an uninterrupted run and trained on the same rows. What is killed
or signalled is a process of its own; the runs it is compared with, and the reruns that resume, run in this process."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.in_process import cli
from tests.processes import cli as process_cli, last_checkpoint, launch, run_env, wait_exit, wait_until
from tests.sample_logs import logged, rows_by_step
from tests.training.reference_runs import DDP_ARGS, SHORT_ROWS

pytestmark = pytest.mark.slow

ARGS = [SHORT_ROWS, "+stage=sample_cascade", "trainer.max_steps=36", "data.global_batch_rows=16", "callbacks.batch_warmup.share=0.25",
        "callbacks.checkpoint_every_n_steps=2", "callbacks.keep_last_checkpoints=2", "callbacks.sample_log=true",
        "callbacks.retrieval.every=null", "trainer.limit_val_batches=0", "trainer.progress_bar=false"]


def wait_for_step(proc: subprocess.Popen, samples: Path, step: int, log: Path | None = None) -> None:
    wait_until(f"step {step} in {samples}", lambda: any(int(row[0]) >= step for row in logged(samples)), proc, log)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return last_checkpoint(run_dir)["state_dict"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory, prepared_sample: Path) -> Path:
    """The session's prepared sample, copied once for this module's runs."""
    return Path(shutil.copytree(prepared_sample, tmp_path_factory.mktemp("module") / "cache"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache: Path) -> Path:
    tmp = tmp_path_factory.mktemp("whole")
    result = cli(ARGS, run_env(tmp, cache), "the uninterrupted run")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return tmp / "runs" / "tiny-sample_cascade"


def phases(rows: list[list[str]]) -> tuple[int, int, int]:
    """(first full-batch step, first step of segment 2, first step of segment 3) of a sample log."""
    segments: dict[int, list[int]] = {}
    for step, _, segment, _ in rows:
        segments.setdefault(int(step), []).append(int(segment))
    warmup_end = min(s for s, ms in segments.items() if len(ms) == 2)
    milestone = min(s for s, ms in segments.items() if ms[0] == 1)
    second = min(s for s, ms in segments.items() if ms[0] == 2)
    assert 4 <= warmup_end < milestone < second - 4, (warmup_end, milestone, second)
    return warmup_end, milestone, second


def interrupt(plan: list[tuple[int, signal.Signals]], run_dir: Path, env: dict, tmp_path: Path) -> None:
    for n, (step, sig) in enumerate(plan):
        log = tmp_path / f"log{n}.txt"
        proc = launch(ARGS, env, log)
        wait_for_step(proc, run_dir / "samples", step, log)
        os.killpg(proc.pid, sig)
        code = wait_exit(proc, f"the run sent {sig.name}")
        gone = time.time()
        out = log.read_text()
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL
        else:
            assert code == 3, out[-3000:]
            # Timed from the checkpoint, not the signal: the step in flight ends first, however loaded the machine.
            since = gone - (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime
            assert since < 10, f"a preempted run must be gone seconds after its checkpoint, not {since:.1f} s"
            assert f"{sig.name}: saved" in out and "rerun the same command to resume" in out
            saved = last_checkpoint(run_dir)
            assert saved["global_step"] >= step            # the step it was in, not an older periodic checkpoint
        assert not list((run_dir / "checkpoints").glob("*.tmp")), "a temporary checkpoint was left behind"


def finish_and_compare(uninterrupted: Path, run_dir: Path, env: dict) -> subprocess.CompletedProcess:
    final = cli(ARGS, env, "the resumed run")
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-3000:]
    assert logged(run_dir / "samples") == logged(uninterrupted / "samples")   # nothing lost, nothing repeated
    want, got = weights(uninterrupted), weights(run_dir)
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want), [k for k in want if not torch.equal(want[k], got[k])][:3]
    assert len(list((run_dir / "checkpoints").glob("step*.ckpt"))) == 2          # keep_last_checkpoints
    return final


def test_sigkill_at_three_points_resumes_exactly(uninterrupted: Path, cache: Path, tmp_path: Path) -> None:
    warmup_end, milestone, second = phases(logged(uninterrupted / "samples"))
    env, run_dir = run_env(tmp_path, cache), tmp_path / "runs" / "tiny-sample_cascade"
    interrupt([(warmup_end // 2, signal.SIGKILL), ((milestone + second) // 2 - 2, signal.SIGKILL), (second + 1, signal.SIGKILL)],
              run_dir, env, tmp_path)
    # The newest checkpoint is truncated (a crash mid-copy on a network filesystem): reported, the previous one used.
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    final = finish_and_compare(uninterrupted, run_dir, env)
    assert "last.ckpt is unreadable" in final.stdout and "resuming from" in final.stdout


def test_sigusr1_and_sigterm_save_the_current_step_and_resume_exactly(uninterrupted: Path, cache: Path, tmp_path: Path) -> None:
    warmup_end, milestone, _ = phases(logged(uninterrupted / "samples"))
    env, run_dir = run_env(tmp_path, cache), tmp_path / "runs" / "tiny-sample_cascade"
    interrupt([(warmup_end // 2 + 1, signal.SIGUSR1), (milestone + 1, signal.SIGTERM)], run_dir, env, tmp_path)
    finish_and_compare(uninterrupted, run_dir, env)


def test_two_process_ddp_shards_data_keeps_the_global_batch_and_resumes(ddp_reference: dict[str, Path], cache: Path,
                                                                       tmp_path: Path) -> None:
    one, two = ddp_reference["one"], ddp_reference["two"]     # 1 process, 2 micro-batches a step; 2 processes, 1 each
    r0, r1 = rows_by_step(two / "samples" / "rank0.tsv"), rows_by_step(two / "samples" / "rank1.tsv")
    single = rows_by_step(one / "samples" / "rank0.tsv")
    assert sorted(r0) == sorted(single) == list(range(12))
    for step in single:
        assert not r0[step] & r1[step]                 # disjoint shards of the global batch
        assert r0[step] | r1[step] == single[step]     # and together the very rows one process trains on
    assert weights(one)["tokens_seen"] == weights(two)["tokens_seen"] == 12 * 16 * 128

    env, killed = run_env(tmp_path / "killed", cache), tmp_path / "killed" / "runs" / "sample"
    proc = launch([*DDP_ARGS, "trainer=cpu_ddp"], env, tmp_path / "ddp-log.txt")
    wait_for_step(proc, killed / "samples", 7, tmp_path / "ddp-log.txt")
    os.killpg(proc.pid, signal.SIGKILL)
    wait_exit(proc, "the killed DDP run")
    resumed = process_cli([*DDP_ARGS, "trainer=cpu_ddp"], env, "the resumed DDP run")
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    for rank in (0, 1):
        assert (killed / "samples" / f"rank{rank}.tsv").read_text() == (two / "samples" / f"rank{rank}.tsv").read_text()
    want, got = weights(two), weights(killed)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_simulated_slurm_requeue_resumes_in_the_same_folder(uninterrupted: Path, cache: Path, tmp_path: Path) -> None:
    """SLURM's warning signal: checkpoint, `scontrol requeue <job>` (a recording stand-in on PATH), exit; the requeued
    job (the same command and environment) finds its checkpoint and ends where an uninterrupted run ends."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.log'}\n")
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "mmbert", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env, run_dir = {**run_env(tmp_path, cache), **slurm}, tmp_path / "runs" / "tiny-sample_cascade"
    proc = launch(ARGS, env, tmp_path / "job.txt")
    wait_for_step(proc, run_dir / "samples", 9, tmp_path / "job.txt")
    os.killpg(proc.pid, signal.SIGUSR1)
    assert wait_exit(proc, "the job sent SIGUSR1") == 3
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    requeued = cli(ARGS, env, "the requeued job")
    assert requeued.returncode == 0 and "resuming from" in requeued.stdout, requeued.stderr[-3000:]
    want, got = weights(uninterrupted), weights(run_dir)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_sweep_jobs_get_their_own_folders_and_resume_independently(cache: Path, tmp_path: Path) -> None:
    args = ["-m", SHORT_ROWS, "optimizer.lr=1e-3,2e-3", "trainer.max_steps=24", "callbacks.checkpoint_every_n_steps=2",
            "callbacks.sample_log=true", "callbacks.retrieval.every=null", "trainer.limit_val_batches=0",
            "trainer.progress_bar=false"]
    env = run_env(tmp_path, cache)
    sweep = tmp_path / "runs" / "sample-sweep"
    proc = launch(args, env, tmp_path / "sweep1.txt")
    wait_until("step 9 of the sweep's first job",
               lambda: any(int(r[0]) >= 9 for f in sweep.glob("*/samples/rank0.tsv") for r in logged(f.parent)),
               proc, tmp_path / "sweep1.txt")
    os.killpg(proc.pid, signal.SIGKILL)                 # the first job dies halfway, the second never started
    wait_exit(proc, "the killed sweep")
    again = cli(args, env, "the rerun sweep")
    assert again.returncode == 0, again.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2 and "optimizer.lr=0.001" in jobs[0] and "optimizer.lr=0.002" in jobs[1], jobs
    assert again.stdout.count("resuming from") == 1 and again.stdout.count("finished at step 24") == 2
    for job in jobs:
        assert [int(r[0]) for r in logged(sweep / job / "samples")] == list(range(24))
    third = cli(args, env, "the third sweep")
    assert third.returncode == 0 and third.stdout.count("already finished at step 24") == 2


@pytest.mark.parametrize("change,named", [
    ("model.global_rope_theta=160000", "model.global_rope_theta: 10000.0 -> 160000.0"),
    ("model=small experiment=tiny-sample_cascade", "model.hidden_size: 64 -> 384"),   # its own folder otherwise
    ("callbacks.lr.shape=linear", "lr_schedule.shape: 1-sqrt -> linear"),
    ("callbacks.mask.points=[[0,0.3],[0.5,0.1]]", "mask.points"),
    ("optimizer.weight_decay=0.01", "optimizer.weight_decay: 8e-05 -> 0.01"),
])
def test_resuming_with_another_model_or_recipe_setting_is_refused_naming_it(change: str, named: str, uninterrupted: Path,
                                                                           cache: Path, tmp_path: Path) -> None:
    """A finished (or interrupted) run rerun with a changed setting: refused before anything is written, the setting
    named with both values; never "already finished" for a recipe it did not train."""
    env = {**run_env(tmp_path, cache), "MMBERT_RUNS": str(uninterrupted.parent)}
    files = lambda: {p: p.stat().st_mtime_ns for p in uninterrupted.rglob("*") if p.is_file() and p.name != "run.lock"}
    before = files()
    result = cli([*ARGS, *change.split()], env, f"a rerun with {change}")
    assert result.returncode == 2 and "other model or recipe settings" in result.stderr and named in result.stderr, result.stderr[-2000:]
    assert files() == before
