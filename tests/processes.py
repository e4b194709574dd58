"""Waiting on processes and files without fixed wall-clock guesses: every wait polls for the thing it waits
for, and its limit is generous (a loaded 2-core machine is several times slower than an idle one) and, when
reached, fails naming what did not happen, with the end of the process's output."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

LIMIT = 1800.0          # seconds; a limit, never a wait


def run_env(tmp: Path, cache: Path) -> dict:
    """The environment of a `python -m mmbert_pl.run` whose runs go under `tmp/runs` and data cache is `cache`."""
    return {**os.environ, "MMBERT_RUNS": str(tmp / "runs"), "MMBERT_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


def launch(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`python -m mmbert_pl.run ARGS` in its own process group (signal it with os.killpg), output to `log`."""
    return subprocess.Popen([sys.executable, "-m", "mmbert_pl.run", *args], env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def run(cmd: list[str], what: str, env: dict | None = None, limit: float = LIMIT, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with output captured; a run past `limit` fails naming `what`."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=limit, **kw)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")[-2000:] + (e.stderr or b"")[-2000:]
        raise AssertionError(f"{what}: still running after {limit:.0f} s; its output ends:\n{out!r}") from None


def cli(args: list[str], env: dict, what: str, module: str = "mmbert_pl.run") -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` to its end, output captured (see `run`)."""
    return run([sys.executable, "-m", module, *args], what, env=env)


def finished(args: list[str], env: dict, what: str, run: Callable[..., subprocess.CompletedProcess] = cli) -> Path:
    """The run folder of `python -m mmbert_pl.run ARGS` (runs under env's MMBERT_RUNS), which must succeed; `run`:
    `cli` (a process of its own) or `tests.in_process.cli` (this process)."""
    result = run(args, env, what)
    assert result.returncode == 0, f"{what}:\n" + result.stdout[-2000:] + result.stderr[-3000:]
    return Path(env["MMBERT_RUNS"]) / "sample"


def last_checkpoint(run_dir: Path) -> dict:
    """`run_dir`'s checkpoints/last.ckpt, whole: weights, optimizer state, loop counters."""
    import torch

    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen | None = None, log: Path | None = None,
               limit: float = LIMIT) -> None:
    """Poll `ready` until it holds; fail naming `what` if `proc` ends first or `limit` passes."""
    end = time.monotonic() + limit
    while not ready():
        tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
        assert proc is None or proc.poll() is None, f"the process ended (code {proc.returncode}) before {what}:\n{tail}"
        assert time.monotonic() < end, f"no {what} within {limit:.0f} s:\n{tail}"
        time.sleep(0.02)


def wait_exit(proc: subprocess.Popen, what: str, limit: float = LIMIT) -> int:
    """The exit code of `proc`; fail naming `what` if it is still running after `limit`."""
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{what}: the process was still running after {limit:.0f} s") from None


def remove_streaming_memory_of(folder: Path) -> None:
    """Remove the shared memory a SIGKILLed run's StreamingDatasets left in /dev/shm (a cluster job's private /dev/shm
    goes with the job): only the prefixes whose registered local folders lie under `folder`, never another live run's
    (streaming's own `clean_stale_shared_memory` removes every prefix, which kills runs of the other test worker)."""
    shm = Path("/dev/shm")
    for locals_file in shm.glob("*_locals"):
        prefix = locals_file.name.split("_")[0]
        try:
            registered = locals_file.read_bytes()
        except OSError:
            continue
        if str(folder).encode() in registered:
            for part in shm.glob(f"{prefix}_*"):
                part.unlink(missing_ok=True)

