"""Preemption: SIGUSR1 (SLURM's warning before the time limit), SIGUSR2 (submitit's) and SIGTERM
(preemption, `scancel`, a container stop) finish the current optimizer step, save `last.ckpt` and
leave `trainer.fit` at once by raising `Preempted`: no validation, retrieval or export runs after a
preemption save, so the process is gone seconds after the checkpoint is written, at any model size.
Rerunning the same command resumes exactly.

A signal that arrives in the middle of a step is acted on when that step ends: a checkpoint holds whole
optimizer steps. A second signal changes nothing (it is reported); SIGKILL abandons the step in flight,
and the run then resumes from its previous checkpoint.

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

SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


class Preempted(Exception):
    """Raised once the preemption checkpoint is written, so that Lightning skips every end-of-training hook."""


class Preemption(L.Callback):
    def __init__(self, checkpoint: Path, requeue: bool = True) -> None:
        self.checkpoint = Path(checkpoint)
        self.requeue = requeue
        self.received: int | None = None     # the signal number, once one arrived
        self._previous: dict[int, object] = {}

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

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if pl_module.micro_index != 0:        # only between optimizer steps: a checkpoint holds whole steps
            return
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):   # any rank got one
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
