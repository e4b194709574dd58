"""Run a function in a new interpreter, so its timing, imports and peak memory are its own."""
from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any


def _child(conn, fn: Callable, args: tuple) -> None:
    conn.send(fn(*args))


def in_fresh_process(fn: Callable, *args) -> Any:
    """fn(*args) in a spawned process (not a daemon: data_prep forks its own workers); its return value."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    result = parent.recv()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"{fn.__name__} failed in its process (exit code {proc.exitcode})")
    return result
