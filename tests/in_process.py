"""A command run inside the test process: `python -m MODULE ARGS` without its 6-8 s of imports and interpreter
teardown. For checks of what a command prints, writes and exits with; what only a process of its own shows
(signals, kill -9, several ranks, the first import, the warnings a fresh interpreter prints) stays with
`tests.processes`."""
from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def captured(fd: int, name: str, into: list[str]) -> Iterator[None]:
    """File descriptor `fd` and `sys.<name>` both into one file, appended to `into` at the end: the command's own
    prints and its child processes' output (a recipe's stages, a shard build's workers) in the order written."""
    stream = getattr(sys, name)
    stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as file:
        os.dup2(file.fileno(), fd)
        text = io.TextIOWrapper(os.fdopen(os.dup(fd), "wb"), encoding="utf-8", errors="replace", write_through=True)
        setattr(sys, name, text)
        try:
            yield
        finally:
            setattr(sys, name, stream)
            text.close()
            os.dup2(saved, fd)
            os.close(saved)
            file.seek(0)
            into.append(file.read().decode("utf-8", errors="replace"))


def command(module: str, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` under `env` (default: this process's) in `cwd`, its exit code and output as a subprocess
    gives them; this process's environment, working folder, argv, logging, signal handlers and Hydra state are as
    before after."""
    from hydra.core.global_hydra import GlobalHydra

    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    root = logging.getLogger()
    saved_logging = root.handlers[:], root.level
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)}
    out: list[str] = []
    err: list[str] = []
    code = 0
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        sys.argv = [module, *args]
        if cwd is not None:
            os.chdir(cwd)
        with captured(1, "stdout", out), captured(2, "stderr", err):
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
                if isinstance(e.code, str):       # what the interpreter prints for sys.exit("message")
                    print(e.code, file=sys.stderr)
            except Exception:                     # what an uncaught exception does to a process
                traceback.print_exc()
                code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        root.handlers[:] = saved_logging[0]
        root.setLevel(saved_logging[1])
        for s, handler in saved_signals.items():
            signal.signal(s, handler)
        GlobalHydra.instance().clear()
        gc.collect()          # a run's datasets let go of their shared memory before the next run opens the same shards
    return subprocess.CompletedProcess([module, *args], code, "".join(out), "".join(err))


def cli(args: list[str], env: dict, what: str, module: str = "mmbert_pl.run") -> subprocess.CompletedProcess:
    """`tests.processes.cli`, in this process (`what` names the command in a failure's message there, not needed here)."""
    return command(module, args, env)
