"""The command-line tools' one convention for bad input (a config value, a path, a data file) and for a
place they cannot write (a full disk, no permission, a read-only file system): a single `error: ...` line
on stderr and exit code 2, instead of a traceback."""
from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from data_prep.write_errors import write_problem


def damaged_shard(message: str) -> str | None:
    """What to say when streaming found a shard whose hash is not its index's (it says so from a loader worker, its
    background thread or the main process, each wrapped its own way)."""
    found = re.search(r"Checksum failure: (\S+)", message)
    if found is None:
        return None
    path = Path(found[1])
    return (f"{path} is damaged (its xxh64 is not the one its index.json records): copy it again from where the "
            f"shards were built, or rebuild them; `python -m data_prep.verify {path.parents[2]}` checks every file")


@contextmanager
def exit_on_bad_input(output: str | Path | None = None) -> Iterator[None]:
    """`output`: the folder a write problem is blamed on when the error does not name a file."""
    try:
        yield
    except ValueError as e:
        print(f"error: {damaged_shard(str(e)) or e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        problem = damaged_shard(str(e)) or write_problem(e, output)
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
