"""Elastic runs: a stage stopped on one layout (processes, micro-batch) resumes on another at the same global
batch, trains the same rows in the same steps and ends within fp32 reduction noise of an uninterrupted run."""
from __future__ import annotations

import csv
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests import in_process, processes
from tests.processes import launch, last_checkpoint, run_env, wait_exit, wait_until
from tests.sample_logs import logged, rows_by_step
from tests.training.reference_runs import DDP_ARGS
from tests.weights import max_relative_difference

pytestmark = pytest.mark.slow

# Measured: layouts end 2.5e-7 to 4.2e-7 apart, relative to each tensor's
# largest entry (fp32 sums in another order); one Adam step more or less is about 1e-2.
BOUND = 1e-4
TWO = ["trainer=cpu_ddp"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory, prepared_sample: Path) -> Path:
    return Path(shutil.copytree(prepared_sample, tmp_path_factory.mktemp("elastic") / "cache"))


def weights(run_dir: Path) -> dict:
    state = last_checkpoint(run_dir)["state_dict"]
    return {k: v for k, v in state.items() if k != "tokens_seen"}


def stop_at(step: int, args: list[str], env: dict, run_dir: Path, log: Path) -> int:
    """Launch, SIGTERM once `step` is logged; the step the checkpoint holds."""
    proc = launch(args, env, log)
    wait_until(f"step {step}", lambda: any(int(r[0]) >= step for r in logged(run_dir / "samples")), proc, log)
    os.killpg(proc.pid, signal.SIGTERM)
    assert wait_exit(proc, "the stopped run") == 3, log.read_text()[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_dir():                                   # sharded: the loop state is in meta.pt
        import torch

        return int(torch.load(last / "meta.pt", map_location="cpu", weights_only=False)["global_step"])
    return int(last_checkpoint(run_dir)["global_step"])


def rows_of(run_dir: Path) -> dict[int, set[int]]:
    """Step -> every rank's rows (a rank that the resumed layout lacks keeps the lines of the steps it trained)."""
    out: dict[int, set[int]] = {}
    for path in sorted((run_dir / "samples").glob("rank*.tsv")):
        for step, ids in rows_by_step(path).items():
            out.setdefault(step, set()).update(ids)
    return out


def logged_steps(run_dir: Path) -> list[int]:
    rows = list(csv.DictReader((run_dir / "logs" / "metrics.csv").open()))
    return [int(float(r["global_step"])) for r in rows if r.get("train/loss")]


def test_one_and_two_processes_train_the_same_numbers(ddp_reference: dict[str, Path]) -> None:
    one, two = (weights(ddp_reference[k]) for k in ("one", "two"))
    difference = max_relative_difference(one, two)
    print(f"1 vs 2 processes: max relative difference {difference:.2e}")
    assert difference < BOUND


@pytest.mark.parametrize("first,then,line", [
    (TWO, [], "resuming on 1 process instead of 2: accumulation 2 instead of 1; the same global batch of 16 rows"),
    ([], TWO, "resuming on 2 processes instead of 1: accumulation 1 instead of 2; the same global batch of 16 rows"),
    ([], ["data.micro_batch=4", "data.num_workers=2"],
     "resuming on 1 process: micro-batch 4 instead of 8, accumulation 4 instead of 2, loader workers per process 2 instead of 0"),
])
def test_a_stopped_run_resumes_on_another_layout(first: list[str], then: list[str], line: str, ddp_reference: dict[str, Path],
                                               cache: Path, tmp_path: Path) -> None:
    env, run_dir = run_env(tmp_path, cache), tmp_path / "runs" / "sample"
    # agree on the signal every step: the run is 12 steps long
    logs = "trainer.log_every_n_steps=1"
    stopped = stop_at(2, [*DDP_ARGS, *first, "trainer.preemption_agree_every=1", logs], env, run_dir, tmp_path / "first.txt")
    assert 2 <= stopped < 10
    resume = processes.cli if then == TWO else in_process.cli         # one process: in this one
    resumed = resume([*DDP_ARGS, *then, logs], env, "the resumed run")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert line in resumed.stdout
    reference = ddp_reference["one"]
    # the same rows in the same steps (without the loop counters rescaled to the new loader batches, 1 -> 2 starts the
    # next epoch's order mid-way through this one)
    assert rows_of(run_dir) == rows_by_step(reference / "samples" / "rank0.tsv")
    difference = max_relative_difference(weights(reference), weights(run_dir))
    print(f"{first} -> {then}: max relative difference {difference:.2e}")
    assert difference < BOUND
    assert last_checkpoint(run_dir)["state_dict"]["tokens_seen"] == 12 * 16 * 128
    steps = logged_steps(run_dir)                   # metrics.csv goes on where the stopped launch left it
    assert steps == sorted(steps) and min(steps) < stopped < max(steps) and max(steps) >= 11, steps


def test_a_layout_that_cannot_give_the_global_batch_is_refused(cache: Path, tmp_path: Path) -> None:
    r = in_process.cli([*DDP_ARGS, "data.micro_batch=5"], run_env(tmp_path, cache), "a run with micro-batch 5")
    assert r.returncode == 2 and r.stderr.count("\n") <= 2, r.stderr
    assert ("data.global_batch_rows=16 is not a multiple of data.micro_batch x processes = 5 x 1 = 5; "
            "data.micro_batch=2 or 4 or 8 or 16 gives it") in r.stderr
    assert not (tmp_path / "runs").exists()


def test_a_sharded_fsdp_checkpoint_of_two_processes_resumes_on_one(ddp_reference: dict[str, Path], cache: Path,
                                                                   tmp_path: Path) -> None:
    """torch.distributed.checkpoint reshards the weights and Adam moments that 2 processes wrote for 1."""
    env, run_dir = run_env(tmp_path, cache), tmp_path / "runs" / "sample"
    sharded = [*DDP_ARGS, "trainer=cpu_fsdp", "trainer.checkpoint_format=sharded"]
    stopped = stop_at(2, [*sharded, "trainer.preemption_agree_every=1"], env, run_dir, tmp_path / "first.txt")
    assert 2 <= stopped < 10 and (run_dir / "checkpoints" / "last.ckpt").is_dir()
    resumed = processes.cli([*sharded, "trainer.devices=1"], env, "the FSDP run resumed on 1 process")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "resuming on 1 process instead of 2: accumulation 2 instead of 1" in resumed.stdout
    reference = ddp_reference["one"]
    assert rows_of(run_dir) == rows_by_step(reference / "samples" / "rank0.tsv")
    difference = max_relative_difference(weights(reference), weights(run_dir))
    print(f"FSDP sharded 2 -> 1: max relative difference {difference:.2e}")
    assert difference < BOUND
