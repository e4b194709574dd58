"""Preemption: SIGUSR1 (SLURM's warning before the time limit), SIGUSR2 (submitit's) and SIGTERM
(preemption, `scancel`, a container stop) finish the current optimizer step, save `last.ckpt` and
leave `trainer.fit` at once by raising `Preempted`: no validation, retrieval or export runs after a
preemption save, so the process is gone seconds after the checkpoint is written, at any model size.
Rerunning the same command resumes exactly.

A signal that arrives in the middle of a step is acted on when that step ends: a checkpoint holds whole
optimizer steps. A second signal changes nothing (it is reported); SIGKILL abandons the step in flight,
and the run then resumes from its previous checkpoint.

With several processes the ranks must stop at the same step (saving is collective) without a blocking
all-reduce every step. Every `agree_every` optimizer steps each rank starts a non-blocking all-reduce (MAX) of
"a signal arrived here" and reads the one it started `agree_every` steps earlier, which has long finished: the
host never waits on the device or the network for it. All ranks read the same value at the same step, so a
signal anywhere is acted on by every rank at the same step boundary, at most 2 * agree_every - 1 steps after it
arrives (a multiple of `agree_every`). One process checks its own flag every step.

This callback is the one owner of the signals and of requeueing: Lightning's SLURM auto-requeue is
switched off by the run, and Lightning's own SIGTERM handling (which exits without a checkpoint) is
replaced while training runs. Under SLURM with `requeue=True`, rank 0 then asks `scontrol requeue`.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import lightning as L
import torch

SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


class Preempted(Exception):
    """Raised once the preemption checkpoint is written, so that Lightning skips every end-of-training hook."""


class AgreedFlag:
    """A boolean OR over the ranks, read one interval after it was started (see the module docstring)."""

    def __init__(self) -> None:
        self._pending: tuple[object, torch.Tensor, torch.cuda.Event | None] | None = None

    def exchange(self, local: bool, device: torch.device) -> bool:
        """Start the OR of `local` over the ranks; return the OR started by the previous call (False the first time)."""
        import torch.distributed as dist

        agreed = self._finish()
        flag = torch.tensor([float(local)], device=device)
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, async_op=True)
        if device.type == "cuda":
            work.wait()                         # orders the current stream after the collective; the host goes on
            host = torch.empty(1, pin_memory=True)
            host.copy_(flag, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            self._pending = (None, host, done)
        else:
            self._pending = (work, flag, None)
        return agreed

    def _finish(self) -> bool:
        if self._pending is None:
            return False
        work, value, done = self._pending
        if done is not None:
            done.synchronize()                  # recorded `agree_every` steps ago: complete by now
        else:
            work.wait()
        return bool(value.item() > 0)


class Preemption(L.Callback):
    def __init__(self, checkpoint: Path, requeue: bool = True, agree_every: int = 5) -> None:
        if agree_every < 1:
            raise ValueError(f"trainer.preemption_agree_every={agree_every}: give a number of optimizer steps >= 1")
        self.checkpoint = Path(checkpoint)
        self.requeue = requeue
        self.agree_every = agree_every
        self.received: int | None = None     # the signal number, once one arrived
        self._previous: dict[int, object] = {}
        self._flag = AgreedFlag()

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            os.write(2, f"{signal.Signals(signum).name}: already stopping after the step in flight; "
                        f"SIGKILL abandons that step\n".encode())
            return
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning registered its handlers (trainer._run), so ours are the ones that run.
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._flag = AgreedFlag()

    def stop_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        """Whether every rank stops after this optimizer step (the same answer on all of them)."""
        if trainer.world_size == 1:
            return self.received is not None
        if trainer.global_step % self.agree_every:
            return False
        return self._flag.exchange(self.received is not None, pl_module.device)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if pl_module.micro_index != 0:        # only between optimizer steps: a checkpoint holds whole steps
            return
        if not self.stop_now(trainer, pl_module):
            return
        trainer.save_checkpoint(self.checkpoint, weights_only=False)
        name = signal.Signals(self.received).name if self.received else "a signal on another rank"
        saved = f"{name}: saved {self.checkpoint} at step {trainer.global_step}"
        if trainer.is_global_zero:
            print(f"{saved}; rerun the same command to resume", flush=True)
            if self.requeue and self.received in (signal.SIGUSR1, signal.SIGUSR2) and os.environ.get("SLURM_JOB_ID"):
                job = os.environ.get("SLURM_ARRAY_JOB_ID")
                job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ["SLURM_JOB_ID"]
                result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
                print(f"scontrol requeue {job}: {'ok' if result.returncode == 0 else result.stderr.strip()}", flush=True)
        raise Preempted(saved)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
