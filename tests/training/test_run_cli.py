"""`python -m mmbert_pl.run` end to end: the default run in a process of its own (what a first-time user types: an
empty cache, the warnings a fresh interpreter prints), then resume/finish, config errors and the plan in this process."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from callbacks.lr import LRSchedule
from mmbert_pl.core.schedules import mask_ratio_at
from tests.in_process import command


def run_cli(*overrides: str, runs: Path, cache: Path, module: str = "mmbert_pl.run") -> subprocess.CompletedProcess:
    """`python -m MODULE OVERRIDES`, run in this process."""
    return command(module, list(overrides), {**os.environ, "MMBERT_RUNS": str(runs), "MMBERT_CACHE": str(cache)})


@pytest.mark.slow
def test_default_run_trains_exports_and_reports_when_finished(tmp_path: Path) -> None:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    runs, cache = tmp_path / "runs", tmp_path / "cache"
    short = ("trainer.max_steps=40", "trainer.val_check_interval=20", "trainer.progress_bar=false", "callbacks.retrieval.every=null",
             "mask_ratio=null", "callbacks.mask.points=[[0,0.3],[1,0.1]]", "callbacks.checkpoint_every_n_steps=20")
    env = {**os.environ, "MMBERT_RUNS": str(runs), "MMBERT_CACHE": str(cache)}
    first = subprocess.run([sys.executable, "-m", "mmbert_pl.run", *short], capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = runs / "sample"
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert len(list((run_dir / "checkpoints").glob("step*.ckpt"))) == 2
    # Saved after the optimizer step on purpose (exact resume): Lightning's page of advice against that is not shown.
    assert "manual optimization" not in first.stderr
    # Nor Lightning's other warnings that every run would print and that need no action (run.py names them).
    for message in ("IterableDataset` has `__len__`", "overridden `transfer_batch_to_device`", "LeafSpec"):
        assert message not in first.stderr
    assert "finished at step 40" in first.stdout and "eng_Latn" in first.stdout   # the mixture table
    model = AutoModelForMaskedLM.from_pretrained(run_dir / "hf")
    tok = AutoTokenizer.from_pretrained(run_dir / "hf")
    assert model.config.vocab_size == 4096 and tok.mask_token_id == 4

    rows = list(csv.DictReader(open(run_dir / "logs" / "metrics.csv")))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses[-1] < losses[0] - 0.5
    assert any(r.get("val/fao_Latn/loss") for r in rows) and any(r.get("val/loss") for r in rows)
    # The logged schedules equal their formulas at the tokens seen when each step began (8 rows x 512 per step).
    budget, per_step = 40 * 8 * 512, 8 * 512
    lr = LRSchedule(8e-4, t_warmup=0.1 * budget, t_max=budget, t_decay=0.5 * budget, alpha_f=0.02)
    logged = [r for r in rows if r.get("schedule/lr")]
    assert len(logged) >= 4
    for r in logged:
        start = float(r["perf/tokens_seen"]) - per_step
        assert float(r["schedule/lr"]) == pytest.approx(lr.lr(start), rel=1e-5)
        assert float(r["train/mask_ratio"]) == pytest.approx(mask_ratio_at(start, [(0, 0.3), (budget, 0.1)]), rel=1e-5)

    again = run_cli(*short, runs=runs, cache=cache)
    assert again.returncode == 0 and "already finished at step 40" in again.stdout
    # Another budget is another mixture: continuing this run would repeat data, so it is refused; a new run may start from it.
    (run_dir / "finished.json").unlink()
    stamp = (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    longer = run_cli("trainer.max_steps=50", "trainer.progress_bar=false", runs=runs, cache=cache)
    assert longer.returncode == 2 and "another data mixture" in longer.stderr and "init_from=" in longer.stderr
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp
    follow = run_cli("experiment=more", f"init_from={run_dir / 'checkpoints' / 'last.ckpt'}", "trainer.max_steps=5",
                     "trainer.progress_bar=false", "optimizer.compile=true", runs=runs, cache=cache)
    assert follow.returncode == 0 and "initialised weights and optimizer state (Adam moments after 40 steps)" in follow.stdout
    ckpt = torch.load(runs / "more" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["compile_optimizer"] is True          # the compiled update trained its 5 steps
    assert {s["step"] for s in ckpt["optimizer_states"][0]["state"].values()} == {45}   # the chain keeps the step counts


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.nam=tiny", "nam"),                       # unknown key: the schema rejects it at compose time
        ("trainer.max_steps=abc", "max_steps"),           # wrong type
        ("mask_ratio=1.5", "mask_ratio=1.5: must be in (0, 1)"),
        ("data.temperature=0", "data.temperature=0"),
        ("model.name=huge", "choose one of ['base', 'small', 'tiny']"),
        ("model.loss_chunk_rows=0", "model.loss_chunk_rows=0: must be > 0"),
    ],
)
def test_bad_config_is_one_clear_error_before_work(tmp_path: Path, override: str, message: str) -> None:
    result = run_cli(override, runs=tmp_path / "runs", cache=tmp_path / "cache")
    assert result.returncode != 0 and message in result.stdout + result.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs" / "sample" / "checkpoints").exists()


def test_data_root_without_manifest_is_an_error(tmp_path: Path) -> None:
    result = run_cli(f"data.root={tmp_path}", runs=tmp_path / "runs", cache=tmp_path / "cache")
    assert result.returncode == 2 and "no manifest.json" in result.stderr


def test_plan_shows_the_cascade_without_training(tmp_path: Path, sample_cache: Path) -> None:
    result = run_cli("+stage=sample_cascade", runs=tmp_path / "runs", cache=sample_cache, module="mmbert_pl.plan")
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = tmp_path / "runs" / "tiny-sample_cascade"
    assert (run_dir / "plan.png").stat().st_size > 10_000 and not (run_dir / "checkpoints").exists()
    out = result.stdout
    assert "300 optimizer steps" in out
    assert "pretrain (20 languages), τ=0.7" in out and "ext (30 languages), τ=0.5" in out and "decay_all (40 languages), τ=0.3" in out
    assert "1.600e-05" in out                                             # the LR ends at 0.02 x 8e-4


@pytest.mark.parametrize("stage,languages,steps", [("pretrain", 61, "500,153"), ("ext", 110, "15,895"), ("decay_all", 1834, "2,650")])
def test_plan_of_the_papers_run_over_its_token_counts_needs_no_shards(stage: str, languages: int, steps: str, tmp_path: Path) -> None:
    """Every stage of mmBERT base over language_counts.csv: its steps (2.3T / (4608 x 1024) with the batch warmup's
    smaller steps, ...), its languages (60 / 109 / 1833 + code), each with a share and epochs, and the PNG."""
    result = run_cli(f"+stage={stage}", "model=base", "data=mmbert_counts", runs=tmp_path / "runs", cache=tmp_path / "cache",
                     module="mmbert_pl.plan")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"= {steps} optimizer steps of 4608 rows" in result.stdout
    assert f"{stage} ({languages} languages)" in result.stdout
    table = [line.split() for line in result.stdout.splitlines() if len(line.split()) == 4 and line.split()[2].endswith("%")]
    assert len(table) == languages and {row[0] for row in table} >= {"eng", "code"}
    assert abs(sum(float(row[2].rstrip("%")) for row in table) - 100) < 0.5 and max(float(row[3]) for row in table) > 0
    assert (tmp_path / "runs" / f"base-{stage}" / "plan.png").stat().st_size > 10_000


def test_a_corpus_given_by_its_counts_cannot_be_trained(tmp_path: Path) -> None:
    refused = run_cli("data=mmbert_counts", runs=tmp_path / "runs", cache=tmp_path / "cache")
    assert refused.returncode == 2 and "training needs shards: data.root=" in refused.stderr


@pytest.mark.slow
def test_batch_warmup_grows_the_global_batch_in_equal_steps(tmp_path: Path, sample_cache: Path) -> None:
    result = run_cli("trainer.max_steps=12", "data.global_batch_rows=32", "data.micro_batch=8", "callbacks.batch_warmup.share=0.5",
                     "trainer.log_every_n_steps=1", "trainer.progress_bar=false", "trainer.limit_val_batches=0",
                     "callbacks.retrieval.every=null", runs=tmp_path / "runs", cache=sample_cache)
    assert result.returncode == 0, result.stderr[-3000:]
    # Budget 12 x 32 rows x 512 tokens; the first half warms up through 8, 16, 24 rows, 4 steps each, then 6 steps of 32.
    assert "finished at step 18" in result.stdout
    rows = list(csv.DictReader(open(tmp_path / "runs" / "sample" / "logs" / "metrics.csv")))
    # One log row per micro-batch (8 rows each): a step of k micro-batches fills k rows.
    sizes = [int(float(r["schedule/global_batch_rows"])) for r in rows if r.get("schedule/global_batch_rows")]
    assert sizes == [8] * (4 * 1) + [16] * (4 * 2) + [24] * (4 * 3) + [32] * (6 * 4)
    assert max(float(r["perf/tokens_seen"]) for r in rows if r.get("perf/tokens_seen")) == 12 * 32 * 512


@pytest.mark.slow
def test_validation_over_forty_languages_draws_one_bar_a_few_times(tmp_path: Path, sample_cache: Path) -> None:
    """Lightning's bar restarts and prints for each validation dataloader (one per language, over 80 lines here);
    ours is one bar over all of them, drawn about ten times."""
    result = run_cli("trainer.max_steps=4", "trainer.val_check_interval=4", "trainer.limit_val_batches=1",
                     "callbacks.retrieval.every=null", runs=tmp_path / "runs", cache=sample_cache)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if "Validation" in line]
    assert 0 < len(lines) <= 15 and not any("DataLoader" in line for line in lines), lines
    assert "(40 languages)" in lines[-1] and "40/40" in lines[-1]
