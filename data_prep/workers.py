"""Forked worker processes that take whole languages, largest first, until none is left.

Workers take the next language from a shared counter and send progress and finished languages
on one queue, so a language costs no round trip through the parent (a `multiprocessing.Pool`
spent about a millisecond per task on it, a few percent of a run of small languages). A worker
dies with its parent (Linux: PR_SET_PDEATHSIG), so a killed run leaves nothing writing behind it;
a worker that dies (killed, out of memory) is reported and the run stops, keeping what finished.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import queue
import signal
import traceback
from collections.abc import Callable, Iterator
from typing import Any


class _Report:
    """What a worker hands `process_language` as its progress sink."""

    def __init__(self, messages) -> None:
        self.messages = messages

    def put(self, message: tuple[str, int]) -> None:
        self.messages.put(("tokens", *message))


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        pass                                                          # not Linux: the loop below still checks
    if os.getppid() != parent:
        os._exit(1)


def _work(fn: Callable, tasks: list, next_task, messages, parent: int) -> None:
    _die_with_parent(parent)
    report = _Report(messages)
    try:
        while True:
            with next_task.get_lock():
                i = next_task.value
                next_task.value += 1
            if i >= len(tasks) or os.getppid() != parent:
                break
            messages.put(("done", i, fn(tasks[i], report)))
    except BaseException as e:                                        # noqa: BLE001 (sent to the parent, which raises it)
        try:
            pickle.dumps(e)
        except Exception:                                             # noqa: BLE001
            e = RuntimeError(traceback.format_exc())
        messages.put(("error", e))


def run_in_workers(fn: Callable[[Any, _Report], Any], tasks: list, workers: int,
                   on_tokens: Callable[[str, int], None]) -> Iterator[tuple[int, Any]]:
    """Yield (task index, fn(task, progress)) as workers finish tasks, in any order; `on_tokens` gets progress.

    Uses fork, so a caller that already runs threads (torch's OpenMP pool, streaming) must not use it
    (a forked child can deadlock on their locks): data_prep itself imports neither.
    """
    ctx = mp.get_context("fork")
    next_task, messages = ctx.Value("q", 0), ctx.Queue()
    procs = [ctx.Process(target=_work, args=(fn, tasks, next_task, messages, os.getpid()), daemon=True)
             for _ in range(min(workers, len(tasks)))]
    for p in procs:
        p.start()
    try:
        for _ in range(len(tasks)):
            while True:
                try:
                    kind, *body = messages.get(timeout=0.5)
                except queue.Empty:
                    dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                    if dead:
                        raise RuntimeError(f"a data_prep worker died (exit code {dead[0]}; -9 is a kill, often for memory); "
                                           "what finished is kept: rerun the same command to finish") from None
                    continue
                if kind == "tokens":
                    on_tokens(*body)
                elif kind == "error":
                    raise body[0]
                else:
                    yield body[0], body[1]
                    break
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
        messages.close()
