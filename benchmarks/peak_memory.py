"""Peak memory of a stretch of code: device memory on CUDA, resident memory on a (Linux) CPU."""
from __future__ import annotations

import torch


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


class PeakMemory:
    """`with PeakMemory(device) as m: ...` then `m.bytes`: the peak above what was in use on entry.

    On the CPU this restarts the process's peak RSS (`/proc/self/clear_refs`), so the figure is the
    process's own: run each variant in a fresh process when comparing.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.bytes = 0

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.base = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self.base
        else:
            self.bytes = _status_kib("VmHWM") * 1024 - self.base
