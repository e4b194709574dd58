"""A training step never makes the host wait for the device.

On the meta device a tensor has shapes but no data, so everything that would stall the host
behind a GPU (`.item()`, `.tolist()`, `int()`, a boolean index, `nonzero`, a copy back) raises
there: the step's whole device part (encoder, sparse head, loss, backward, StableAdamW) runs on
meta. On CUDA, `torch.cuda.set_sync_debug_mode("error")` checks the same over real Lightning
steps, hooks and callbacks included.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from callbacks.lr import LRSchedule
from callbacks.mask_ratio import MaskRatioSchedule
from callbacks.token_budget import TokenBudget
from data_prep.packing import BestFitPacker
from mmbert_pl.data.rows import collate_rows, flatten_rows
from mmbert_pl.training.masking import ordinary_lookup
from mmbert_pl.model import MMBertForMaskedLM, named_config
from mmbert_pl.model.attention import torch_varlen_attn
from mmbert_pl.training.module import MLMModule
from mmbert_pl.training.optim import StableAdamW, parameter_groups
from mmbert_pl.training.step_inputs import step_inputs
from tests.training.reference_runs import SHORT_ROWS

ROW = 256


POOL = torch.arange(100, 4096)     # the tiny vocab's ordinary ids in these tests


def packed_batches(count: int, rows: int, vocab: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    batches = []
    for b in range(count):
        packer, packed = BestFitPacker(ROW), []
        while len(packed) < rows:
            packed.extend(packer.add(rng.integers(100, vocab, int(rng.integers(16, ROW)), dtype=np.uint32)))
        # sample ids, as the training loader gives them: each row's masks and dropout are seeded from its own
        batches.append(collate_rows([{"input_ids": r.ids, "cu_seqlens": r.cu, "sample_id": b * rows + i}
                                     for i, r in enumerate(packed[:rows])]))
    return batches


def test_step_inputs_hold_the_masked_stream_and_its_labels() -> None:
    batch = packed_batches(1, 4, 4096)[0]
    ids, cu, max_len = flatten_rows(batch["input_ids"], batch["cu_seqlens"])
    x = step_inputs(batch, 0.3, 4, POOL, seeds=[3, 4, 5, 6], device=torch.device("cpu"), ordinary=ordinary_lookup(POOL, 4096))
    assert torch.equal(x.cu_seqlens, cu) and x.max_seqlen == max_len and x.input_ids.shape == ids.shape
    assert torch.equal(x.targets, ids[x.positions]) and bool((x.positions.diff() > 0).all())
    unlabelled = torch.ones_like(ids, dtype=torch.bool)
    unlabelled[x.positions] = False
    assert torch.equal(x.input_ids[unlabelled], ids[unlabelled])           # only labelled tokens change
    assert 0.25 < x.positions.numel() / ids.numel() < 0.35
    assert 0.7 < (x.input_ids[x.positions] == 4).float().mean() < 0.9      # 80% of them become <mask>


@pytest.mark.parametrize("backend,accumulate", [("sdpa", 1), ("sdpa", 2), ("varlen", 1)])
def test_device_part_of_the_step_reads_no_device_data(backend: str, accumulate: int) -> None:
    """`varlen` (PyTorch's FlashAttention) has shape-only meta kernels: its numbers are checked on CUDA."""
    if backend == "varlen" and torch_varlen_attn() is None:
        pytest.skip(f"torch {torch.__version__} has no varlen_attn with window_size")
    cfg = named_config("tiny")
    model = MMBertForMaskedLM(cfg, attn_backend=backend).to("meta").train()
    optimizer = StableAdamW(parameter_groups(model, 8e-5))
    for step, batch in enumerate(packed_batches(2 * accumulate, 4, cfg.vocab_size)):
        x = step_inputs(batch, 0.3, 4, POOL, seeds=[step] * 4, device=torch.device("meta"), ordinary=ordinary_lookup(POOL, 4096))
        assert x.input_ids.is_meta and x.positions.is_meta and not x.cu_seqlens.is_meta
        out = model(x.input_ids, x.cu_seqlens, x.max_seqlen, labels=x.targets, positions=x.positions, dropout_keys=x.dropout_keys)
        (out.loss / accumulate).backward()
        assert out.loss.is_meta and out.num_labels == x.positions.numel()
        if (step + 1) % accumulate == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    assert optimizer.state[model.decoder.bias]["step"] == 2


def test_meta_catches_a_step_that_finds_its_labels_on_the_device() -> None:
    """The check above can fail: labels given per token make the model find them with `nonzero`."""
    cfg = named_config("tiny")
    model = MMBertForMaskedLM(cfg, attn_backend="sdpa").to("meta")
    x = step_inputs(packed_batches(1, 2, cfg.vocab_size)[0], 0.3, 4, POOL, seeds=[0, 1], device=torch.device("meta"),
                    ordinary=ordinary_lookup(POOL, 4096))
    labels = torch.full_like(x.input_ids, -100).index_put_((x.positions,), x.targets)
    with pytest.raises((NotImplementedError, RuntimeError)):
        model(x.input_ids, x.cu_seqlens, x.max_seqlen, labels=labels)


class SyncErrors(L.Callback):
    """Turns every host sync into an error from the start of batch `first` to the start of batch `last`."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.first:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        if batch_idx == self.last:
            torch.cuda.set_sync_debug_mode("default")

    def on_train_end(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend,compile_optimizer", [("sdpa", False), ("flex", False), ("flex", True)]
                         + ([("varlen", False)] if torch_varlen_attn() else []))
@pytest.mark.slow
def test_lightning_steps_on_cuda_make_no_host_sync(backend: str, compile_optimizer: bool) -> None:
    """The compiled optimizer reads its per-step numbers from 0-d host tensors: that must not sync either."""
    cfg = named_config("tiny", attn_out_dropout=0.1)
    module = MLMModule(cfg, random_pool=list(range(100, cfg.vocab_size)), attn_backend=backend, accumulate=2,
                       compile_optimizer=compile_optimizer)
    batches = packed_batches(12, 8, cfg.vocab_size)
    callbacks = [SyncErrors(first=4, last=10), LRSchedule(8e-4, 1e4, 1e7), MaskRatioSchedule([(0, 0.3), (1e7, 0.05)]),
                 TokenBudget(1e7, peak_flops=1e12)]
    trainer = L.Trainer(accelerator="gpu", devices=1, precision="bf16-mixed", max_steps=6, log_every_n_steps=1000,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=callbacks)
    trainer.fit(module, torch.utils.data.DataLoader(batches, batch_size=None))
    assert module.tokens == 12 * 8 * ROW and trainer.global_step == 6


@pytest.mark.slow
def test_values_reach_the_logger_on_its_batches_and_the_last(tmp_path) -> None:
    """Logged only where Lightning writes (every 4th batch here) and at the budget's stop (batch 10)."""
    import csv

    cfg = named_config("tiny")
    module = MLMModule(cfg, random_pool=list(range(100, cfg.vocab_size)), attn_backend="sdpa")
    batches = packed_batches(12, 2, cfg.vocab_size)
    callbacks = [LRSchedule(8e-4, 1e3, 1e5), MaskRatioSchedule(0.3), TokenBudget(10 * 2 * ROW, peak_flops=1e12)]
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=12, log_every_n_steps=4,
                        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="", version=""), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(module, torch.utils.data.DataLoader(batches, batch_size=None))
    rows = [r for r in csv.DictReader(open(tmp_path / "metrics.csv")) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == [3, 7, 9]
    for r in rows:        # the values themselves, not only their presence: "nan" and "0.0" are non-empty strings
        started = float(r["perf/tokens_seen"]) - 2 * ROW
        assert float(r["schedule/lr"]) == pytest.approx(callbacks[0].lr(started), rel=1e-6) and float(r["schedule/lr"]) > 0
        assert float(r["train/mask_ratio"]) == pytest.approx(0.3)
        assert float(r["perf/tokens_per_s"]) > 0 and 0 < float(r["perf/mfu"]) < 1      # nan fails both
    assert float(rows[-1]["perf/tokens_seen"]) == 10 * 2 * ROW
    assert set(module.shown) >= {"loss", "lr", "tok/s", "mask"}


DDP_WARMUP = [SHORT_ROWS, "trainer=cpu_ddp", "data.global_batch_rows=32", "callbacks.batch_warmup.share=0.25", "data.num_workers=2",
              "trainer.max_steps=24", "callbacks.sample_log=true", "callbacks.checkpoint_every_n_steps=4",
              "callbacks.retrieval.every=null", "trainer.val_check_interval=1000", "trainer.progress_bar=false"]


def rank_pid(group: int, rank: int) -> int:
    """The process of DDP rank `rank` in the process group `group` (Lightning's children carry LOCAL_RANK)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != group:
                continue
            env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
        except (OSError, ValueError):
            continue
        if env.get("LOCAL_RANK", "0") == str(rank) and "mmbert_pl.run" in Path(f"/proc/{pid}/cmdline").read_text():
            return int(pid)
    raise AssertionError(f"no rank {rank} in process group {group}")


@pytest.mark.slow
def test_two_processes_agree_on_a_signal_without_a_sync_every_step(tmp_path: Path, sample_cache: Path) -> None:
    """SIGTERM to rank 1 alone: both ranks save at the same step, one of the agreement steps (a multiple of
    trainer.preemption_agree_every, not the next step), at most 2 x 5 - 1 steps late; the rerun (batch-size warmup
    under DDP, 2 loader workers) ends exactly where the uninterrupted 2-process run ends."""
    from tests.processes import cli, finished, last_checkpoint, launch, run_env, wait_exit, wait_until
    from tests.sample_logs import logged

    cache = sample_cache
    whole = finished(DDP_WARMUP, run_env(tmp_path / "whole", cache), "the uninterrupted run")

    env, run_dir = run_env(tmp_path / "cut", cache), tmp_path / "cut" / "runs" / "sample"
    log = tmp_path / "cut.txt"
    proc = launch(DDP_WARMUP, env, log)

    def step() -> int:
        return max((int(row[0]) for row in logged(run_dir / "samples")), default=-1)

    wait_until("step 6 in the sample log", lambda: step() >= 6, proc, log)
    os.kill(rank_pid(proc.pid, 1), signal.SIGTERM)
    signalled = step()
    assert wait_exit(proc, "the run whose rank 1 got SIGTERM") == 3, log.read_text()[-3000:]
    saved = last_checkpoint(run_dir)["global_step"]
    assert saved % 5 == 0 and signalled < saved <= signalled + 1 + 2 * 5 - 1, (signalled, saved)
    assert f"a signal on another rank: saved {run_dir / 'checkpoints' / 'last.ckpt'} at step {saved}" in log.read_text()
    for rank in (0, 1):
        assert max(int(row[0]) for row in logged(run_dir / "samples", rank)) == saved - 1   # both stopped after it

    resumed = cli(DDP_WARMUP, env, "the resumed run")
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "sync_dist" not in resumed.stdout + resumed.stderr      # torchmetrics syncs the validation metrics itself
    want, got = last_checkpoint(whole), last_checkpoint(run_dir)
    assert all(torch.equal(want["state_dict"][k], got["state_dict"][k]) for k in want["state_dict"])
    for rank in (0, 1):
        assert (run_dir / "samples" / f"rank{rank}.tsv").read_text() == \
            (whole / "samples" / f"rank{rank}.tsv").read_text()
