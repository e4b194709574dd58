"""What an operating-system error while writing means, in one line: which path, which problem, what to do.

ENOSPC and the others reach us in several disguises: a plain OSError without a file name (a buffered
write), torch's `RuntimeError: [enforce fail at inline_container.cc] unexpected pos` with the OSError as
its context, or safetensors' `... (os error 28)`. `writing(path)` turns any of them into an OSError that
names `path`; `write_problem` finds it in an exception chain and words it; `write_atomically` writes a
small file that a reader sees whole or not at all, and says which file it could not write.
"""
from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ADVICE = {
    errno.ENOSPC: "free space there (df -h) or write elsewhere, then rerun the same command",
    errno.EDQUOT: "free space within your quota or write elsewhere, then rerun the same command",
    errno.EACCES: "make it writable for this user or write elsewhere",
    errno.EPERM: "make it writable for this user or write elsewhere",
    errno.EROFS: "that file system is mounted read-only: write elsewhere",
}
_RUST_OS_ERROR = re.compile(r"os error (\d+)")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def write_errno(exc: BaseException) -> tuple[int, str | None] | None:
    """(errno, file name or None) of the first write problem in `exc`'s chain, or None if there is none."""
    found: tuple[int, str | None] | None = None
    for e in _chain(exc):
        code = e.errno if isinstance(e, OSError) else None
        if code is None and (m := _RUST_OS_ERROR.search(str(e))):
            code = int(m.group(1))
        if code in ADVICE:
            name = e.filename if isinstance(e, OSError) else None
            if name is not None:
                return code, str(name)
            found = found or (code, None)
    return found


def write_problem(exc: BaseException, fallback: str | Path | None = None) -> str | None:
    """One line for a write problem in `exc`'s chain (naming its path, else `fallback`), or None."""
    found = write_errno(exc)
    if found is None:
        return None
    code, name = found
    where = name or (str(fallback) if fallback else "the output folder")
    return (f"cannot write {where}: {os.strerror(code).lower()} ({errno.errorcode[code]}); {ADVICE[code]}. "
            f"Files written before are intact")


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Re-raise a write problem inside the block as an OSError naming `path` (the original as its cause)."""
    try:
        yield
    except BaseException as e:
        found = write_errno(e)
        if found is None or found[1] is not None:
            raise
        raise OSError(found[0], os.strerror(found[0]), str(path)) from e


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """`path.tmp`, then renamed over `path`: a reader (a rerun, a requeued job) sees the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
