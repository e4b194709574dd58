"""Faults a user meets on a cluster, through the real CLI: a preempted run is gone seconds after its checkpoint
(no end-of-training work), a corrupt newest checkpoint is never reported as the result, one run per folder,
and the metrics log keeps its rows across a resume."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.in_process import command
from tests.processes import launch, run_env, wait_exit, wait_until
from tests.training.reference_runs import SHORT_ROWS

pytestmark = pytest.mark.slow

QUIET = ["trainer.progress_bar=false", "trainer.val_check_interval=1000"]


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """A run that is not signalled, in this process; what is signalled or killed is `launch`ed in a process of its own."""
    return command("mmbert_pl.run", args, env)


def group_ends(pgid: int, within: float) -> bool:
    """Whether every process of the process group is gone within `within` seconds."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def steps_logged(run_dir: Path) -> int:
    path = run_dir / "samples" / "rank0.tsv"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def cache(tmp_path_factory, prepared_sample: Path) -> Path:
    """The session's prepared sample, copied once for this module's runs."""
    return Path(shutil.copytree(prepared_sample, tmp_path_factory.mktemp("module") / "cache"))


def test_preemption_exits_within_seconds_of_its_checkpoint_with_no_end_of_training_work(cache: Path, tmp_path: Path) -> None:
    """`small` on the CPU: its end-of-training retrieval over the sample's 40 languages takes longer than the limit
    (the second half of this test times its embeddings); a SIGTERM must not wait for it, nor for validation or export."""
    from mmbert_pl.embeddings.embedding import embed, tokenize
    from mmbert_pl.model import MMBertForMaskedLM, named_config
    from mmbert_pl.embeddings.retrieval import held_out
    from mmbert_pl.sample.prepare import SAMPLE_TEXT
    from data_prep.manifest import read_manifest, shard_tokenizer

    args = ["model=small", "data.micro_batch=2", "data.global_batch_rows=2", "trainer.max_steps=50", "data.num_workers=2",
            "callbacks.retrieval.every=1.0", "callbacks.sample_log=true", "callbacks.checkpoint_every_n_steps=1000",
            "trainer.log_every_n_steps=1", *QUIET]
    env, run_dir, log = run_env(tmp_path, cache), tmp_path / "runs" / "sample", tmp_path / "log.txt"
    proc = launch(args, env, log)
    wait_until("step 3", lambda: steps_logged(run_dir) >= 3, proc, log)
    os.killpg(proc.pid, signal.SIGTERM)             # the whole job, loader workers included, as a cluster signals it
    code = wait_exit(proc, "the run sent SIGTERM")
    gone = time.time()
    out = log.read_text()
    assert code == 3, out[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False, mmap=True)
    assert saved["global_step"] >= 3 and "SIGTERM: saved" in out
    assert gone - last.stat().st_mtime < 10, f"exited {gone - last.stat().st_mtime:.1f} s after its checkpoint"
    assert group_ends(proc.pid, within=5), "a loader worker or another child outlived the run"
    assert "leaked shared_memory" not in out
    rows = list(csv.DictReader(open(run_dir / "logs" / "metrics.csv")))
    assert len([r for r in rows if r.get("train/loss")]) >= 2       # the steps before the signal are logged
    assert not any(k.startswith(("retrieval/", "val/")) for r in rows for k, v in r.items() if v), "end-of-training work ran"
    assert not (run_dir / "hf").exists() and not (run_dir / "finished.json").exists()

    # What the signal did not wait for: the end-of-training retrieval's embeddings alone outlast the 10 s limit.
    shards = next(p.parent for p in cache.glob("sample2-v*/shards-*/manifest.json"))
    manifest = read_manifest(shards)
    languages = sorted(manifest["languages"])
    docs = held_out(SAMPLE_TEXT, manifest["settings"], languages)
    model = MMBertForMaskedLM(named_config("small", vocab_size=manifest["tokenizer"]["vocab_size"]), attn_backend="sdpa")
    ids = [tokenize(shard_tokenizer(shards, manifest), list(docs[k].values()), 256) for k in languages]
    start = time.perf_counter()
    for batch in ids:
        embed(model, batch)
    assert time.perf_counter() - start > 10, "the end-of-training evaluation of this test is too fast to prove anything"


SHORT = [SHORT_ROWS, "trainer.max_steps=20", "callbacks.checkpoint_every_n_steps=10", "callbacks.sample_log=true",
         "callbacks.retrieval.every=null", "trainer.limit_val_batches=0", *QUIET]


def test_a_corrupt_newest_checkpoint_at_the_end_is_rewritten_before_the_run_says_finished(cache: Path, tmp_path: Path) -> None:
    env, run_dir = run_env(tmp_path, cache), tmp_path / "runs" / "sample"
    assert run_cli(SHORT, env).returncode == 0
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])       # cut short, as by a crash mid-copy
    again = run_cli(SHORT, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "names results that no longer load" in again.stdout
    assert f"{last} was unreadable" in again.stdout and "rewrote it from the final state (step 20" in again.stdout
    assert "finished at step 20" in again.stdout
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 20
    step20 = torch.load(run_dir / "checkpoints" / "step0000020.ckpt", map_location="cpu", weights_only=False)
    assert all(torch.equal(ckpt["state_dict"][k], step20["state_dict"][k]) for k in step20["state_dict"])
    # The result it names is usable as the next stage's start.
    chained = run_cli(["experiment=next", f"init_from={last}", "trainer.max_steps=2", *QUIET,
                       "callbacks.retrieval.every=null"], env)
    assert chained.returncode == 0 and "initialised weights" in chained.stdout, chained.stderr[-3000:]


def test_a_second_run_in_the_same_folder_stops_at_once_naming_the_owner(cache: Path, tmp_path: Path) -> None:
    env, run_dir, log = run_env(tmp_path, cache), tmp_path / "runs" / "sample", tmp_path / "first.txt"
    longer = [*SHORT, "trainer.max_steps=200"]             # still training when the second one starts
    first = launch(longer, env, log)
    wait_until("a first training step", lambda: steps_logged(run_dir) >= 1, first, log)
    second = run_cli(longer, env)
    assert second.returncode == 2
    assert f"run folder {run_dir} is in use by PID {first.pid} on host" in second.stderr, second.stderr[-2000:]
    os.killpg(first.pid, signal.SIGTERM)                    # the first run, unharmed, saves where it is and stops
    assert wait_exit(first, "the first run") == 3, log.read_text()[-3000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not list((run_dir / "checkpoints").glob("*-v*.ckpt")), "two runs wrote checkpoints side by side"
    # The lock dies with its owner: after a SIGKILL the same command takes the folder over and resumes.
    killed_dir, killed_log = tmp_path / "k" / "runs" / "sample", tmp_path / "killed.txt"
    killed_env, short = run_env(tmp_path / "k", cache), [*SHORT, "trainer.max_steps=8", "callbacks.checkpoint_every_n_steps=2"]
    proc = launch(short, killed_env, killed_log)
    wait_until("step 3", lambda: steps_logged(killed_dir) >= 3, proc, killed_log)
    os.killpg(proc.pid, signal.SIGKILL)
    wait_exit(proc, "the killed run")
    resumed = run_cli(short, killed_env)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr[-2000:]


def test_metrics_keep_their_rows_across_preemption_and_resume(cache: Path, tmp_path: Path) -> None:
    def rows(run_dir: Path) -> list[tuple[str, str, str]]:
        keep = ("step", "train/loss", "val/loss")
        return [tuple(r.get(k, "") for k in keep) for r in csv.DictReader(open(run_dir / "logs" / "metrics.csv"))]

    args = [SHORT_ROWS, "trainer.max_steps=30", "callbacks.checkpoint_every_n_steps=10", "callbacks.sample_log=true",
            "trainer.progress_bar=false", "trainer.val_check_interval=15", "trainer.limit_val_batches=1",
            "callbacks.retrieval.every=null"]
    whole = run_env(tmp_path / "whole", cache)
    assert run_cli(args, whole).returncode == 0
    env, run_dir = run_env(tmp_path / "cut", cache), tmp_path / "cut" / "runs" / "sample"
    for n, (step, sig) in enumerate(((17, signal.SIGTERM), (24, signal.SIGKILL))):
        log = tmp_path / f"log{n}.txt"
        proc = launch(args, env, log)
        wait_until(f"step {step}", lambda: steps_logged(run_dir) >= step, proc, log)
        os.killpg(proc.pid, sig)
        wait_exit(proc, f"the run sent {sig.name}")
        before = rows(run_dir)
        assert any(r[2] for r in before), "the validation at step 15 is in the log"
    final = run_cli(args, env)
    assert final.returncode == 0, final.stderr[-3000:]
    got, want = rows(run_dir), rows(tmp_path / "whole" / "runs" / "sample")
    assert [r[0] for r in got] == [r[0] for r in want]       # every row once, in order, none lost or repeated
    assert got == want                                        # and the same values (CPU runs are exact)
