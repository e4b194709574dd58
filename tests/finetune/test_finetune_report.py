"""Seeds x learning rates as a Hydra multirun of the real fine-tuning CLI, and `evaluate report` gathering its
results.json files into one table: at the learning rate with the best median, the median over seeds."""
from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path
from statistics import median

from tests.in_process import command


def run(module: str, *args: str, env_runs: Path) -> subprocess.CompletedProcess:
    return command(module, list(args), {**os.environ, "MMBERT_RUNS": str(env_runs)})


def test_seed_lr_sweep_and_its_report(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "langid"
    r = run("mmbert_pl.finetune", "-m", f"encoder={trained_run / 'hf'}", "task=langid", "langid.per_language=12",
            "epochs=1", "progress_bar=false", "seed=1,2", "lr=1e-5,1e-3", f"out_dir={out}", env_runs=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sorted((tmp_path / "langid-sweep").rglob("results.json"))]
    assert sorted((x["seed"], x["lr"]) for x in runs) == sorted((s, lr) for s in (1, 2) for lr in (1e-5, 1e-3))
    assert len({x["best_checkpoint"] for x in runs}) == 4 and not out.exists()      # one folder per job

    r = run("mmbert_pl.evaluate", "report", str(tmp_path / "langid-sweep"), "--out", str(tmp_path / "report"),
            env_runs=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "report" / "report.csv")))
    best_lr = max((1e-5, 1e-3), key=lambda lr: median(x["accuracy"] for x in runs if x["lr"] == lr))
    chosen = [x for x in runs if x["lr"] == best_lr]
    overall = {row["metric"]: row for row in rows if row["language"] == "all"}
    assert set(overall) == {"accuracy", "macro_f1"} and float(overall["accuracy"]["lr"]) == best_lr
    assert float(overall["accuracy"]["median"]) == round(median(x["accuracy"] for x in chosen), 4)
    assert float(overall["accuracy"]["baseline"]) == round(median(x["majority_baseline"] for x in chosen), 4)
    assert overall["accuracy"]["seeds"] == "2"
    languages = {k for x in chosen for k in x["per_language"]}
    assert {row["language"] for row in rows} == languages | {"all"} and len(languages) > 30
    for lang in sorted(languages)[:5]:                   # a language without validation rows in a seed: the others'
        row = next(row for row in rows if row["language"] == lang and row["metric"] == "macro_f1")
        values = [x["per_language"][lang]["macro_f1"] for x in chosen if lang in x["per_language"]]
        assert float(row["median"]) == round(median(values), 4) and row["seeds"] == str(len(values))
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| langid (sequence) | all |" in markdown and markdown in r.stdout
    assert (tmp_path / "report" / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_report_names_what_it_cannot_read(tmp_path: Path) -> None:
    r = run("mmbert_pl.evaluate", "report", str(tmp_path), env_runs=tmp_path)
    assert r.returncode == 2 and "no results.json below it" in r.stderr, r.stderr
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text("{not json")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text(json.dumps({"accuracy": 0.5}))
    r = run("mmbert_pl.evaluate", "report", str(tmp_path), env_runs=tmp_path)
    assert r.returncode == 2 and f"{tmp_path / 'a' / 'results.json'}: not JSON" in r.stderr, r.stderr
    assert f"{tmp_path / 'b' / 'results.json'}: no ['name', 'head', 'seed', 'lr']" in r.stderr
