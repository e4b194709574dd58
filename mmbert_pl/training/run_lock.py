"""One run per run folder: an advisory `flock` on `RUN_DIR/run.lock`, held by global rank 0 for the
whole run. The kernel drops the lock when its owner dies (SIGKILL, a node crash on a local disk), so
a stale lock never blocks a rerun; the file says who holds it, for the message a second run prints."""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

LOCK_FILE = "run.lock"


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ValueError naming the process (PID and host) that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "an unknown process"
            os.close(fd)
            raise ValueError(f"run folder {self.path.parent} is in use by {owner} (lock {self.path}); wait for that run "
                             f"to end, or give this one another experiment=NAME") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)          # closing the only descriptor releases the flock
            self._fd = None


def is_global_rank_zero() -> bool:
    """Before Lightning starts: the ranks a launcher (torchrun, SLURM) or Lightning's DDP children carry in the
    environment. Only rank 0 locks the folder its ranks share."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        if os.environ.get(key, "0") not in ("", "0"):
            return False
    return True
