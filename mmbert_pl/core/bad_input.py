"""The command-line tools' one convention for bad input (a config value, a path, a data file) and for a
place they cannot write (a full disk, no permission, a read-only file system): a single `error: ...` line
on stderr and exit code 2, instead of a traceback."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from data_prep.write_errors import write_problem


@contextmanager
def exit_on_bad_input(output: str | Path | None = None) -> Iterator[None]:
    """`output`: the folder a write problem is blamed on when the error does not name a file."""
    try:
        yield
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        problem = write_problem(e, output)
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
