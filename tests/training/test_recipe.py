"""`python -m mmbert_pl.recipe`: the five stages chained with their optimizer state, the TIES merge, every model
evaluated, and the report; run again, it trains nothing. Shrunk with one more override (budget_scale), which
shows the overrides reaching every stage."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.in_process import command
from tests.weights import max_relative_difference

STAGES = ["pretrain", "ext", "decay_eng", "decay_cont", "decay_all"]
LEARNED = 7.5            # MLM loss every model stays under (measured 2026-12-06: 6.72 to 6.86); untrained: 8.32 and more


def weights(checkpoint: Path) -> dict:
    import torch

    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_the_miniature_recipe_chains_merges_evaluates_reports_and_resumes(tmp_path: Path, sample_cache: Path) -> None:
    from mmbert_pl.files.hf import export_problem

    env = {**os.environ, "MMBERT_RUNS": str(tmp_path / "runs"), "MMBERT_CACHE": str(sample_cache)}
    # pretrain 57 steps, ext 8, each decay 2; validation on one batch per language (each stage validates at its end)
    args = ["budget_scale=2e-7", "trainer.limit_val_batches=1"]
    first = command("mmbert_pl.recipe", args, env)       # the recipe here; each stage and the merge in a process of its own
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    folder = tmp_path / "runs" / "recipe"
    steps = {name: json.loads((folder / name / "finished.json").read_text())["step"] for name in STAGES}
    carried = {"ext": steps["pretrain"], **{d: steps["pretrain"] + steps["ext"] for d in STAGES[2:]}}
    for name, previous in zip(STAGES, [None, "pretrain", "ext", "ext", "ext"]):
        finished = json.loads((folder / name / "finished.json").read_text())
        assert finished["budget"] == pytest.approx({"pretrain": 4.6e5, "ext": 1.2e5}.get(name, 2e4))
        if previous:           # the step counts go on across stages, as the moments do
            assert (f"initialised weights and optimizer state (Adam moments after {carried[name]} steps) from "
                    f"{folder / previous / 'checkpoints' / 'last.ckpt'}") in first.stdout
    config = (folder / "decay_all" / ".hydra" / "config.yaml").read_text()
    assert "row_length: 1024" in config and "global_rope_theta: 160000.0" in config and "mask_ratio: 0.05" in config
    assert export_problem(folder / "merged" / "hf") is None
    report = (folder / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert [row.split("|")[1].strip() for row in table] == [*STAGES, "merged"]
    for row in table:      # an untrained tiny model scores ln(4096) = 8.32 or more
        loss, accuracy, retrieval = (float(v) for v in row.split("|")[-4:-1])
        assert 0 < loss < LEARNED and 0 < accuracy < 1 and 0 <= retrieval <= 1, row
    for name, previous in zip(STAGES[1:], ["pretrain", "ext", "ext", "ext"]):     # every stage moved its weights
        before, after = (weights(folder / n / "checkpoints" / "last.ckpt") for n in (previous, name))
        assert max_relative_difference(before, after) > 1e-3, name
    assert "python -m mmbert_pl.merge ties --base" in report and report.count("python -m mmbert_pl.run +stage=") == 5
    assert (folder / "report.png").stat().st_size > 10_000
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*.ckpt")}

    again = command("mmbert_pl.recipe", args, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already finished at step") == 5 and "initialised weights" not in again.stdout
    assert "== merge: " in again.stdout and "is there already" in again.stdout and "== MLM of" not in again.stdout
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.ckpt")} == stamps
    # another command is not taken for a finished stage: its run starts and refuses the changed recipe setting
    changed = command("mmbert_pl.recipe", [*args, "optimizer.weight_decay=0.01"], env)
    assert changed.returncode != 0 and "optimizer.weight_decay: 8e-05 -> 0.01" in changed.stderr, changed.stderr[-3000:]
    assert "recipe stopped: stage pretrain exited with 2" in changed.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.ckpt")} == stamps


def test_the_recipe_refuses_keys_it_sets_itself_and_unknown_recipes(tmp_path: Path) -> None:
    env = {**os.environ, "MMBERT_RUNS": str(tmp_path / "runs")}
    for arg, message in [("init_from=x.ckpt", "the recipe sets init_from for each stage itself"),
                         ("recipe=nope", "recipe=nope: choose one of ['miniature', 'mmbert']"),
                         ("stage_roots.decay=/d", "no stage named ['decay']")]:
        result = command("mmbert_pl.recipe", [arg], env)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "runs").exists()
