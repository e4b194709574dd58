"""The command-line tools' one convention for bad input (a config value, a path, a data file): a ValueError
becomes a single `error: ...` line on stderr and exit code 2, before or instead of a traceback."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def exit_on_bad_input() -> Iterator[None]:
    try:
        yield
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
