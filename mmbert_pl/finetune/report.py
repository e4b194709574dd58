"""One table of fine-tuning results, the way encoder papers report them: for every task, the learning rate
whose median score over seeds is best, and at that rate the median over seeds of each metric, overall and per
language, beside the trivial baseline.

Input: every `results.json` below a folder (what `python -m mmbert_pl.finetune` writes, one per run of a Hydra
multirun sweep). A task is the run's `name` (the built-in task, or the validation file's name).
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import median

METRICS = {"sequence": ("accuracy", "macro_f1"), "token": ("token_accuracy", "entity_f1"), "span": ("exact_match", "f1")}
MAIN = {"sequence": "accuracy", "token": "entity_f1", "span": "f1"}       # what picks the learning rate


@dataclass
class ReportRow:
    task: str
    head: str
    language: str          # "all": the whole validation set
    metric: str
    median: float
    baseline: float | None
    seeds: int
    lr: float


def read_results(folder: str | Path) -> list[dict]:
    paths = sorted(Path(folder).rglob("results.json"))
    if not paths:
        raise ValueError(f"{folder}: no results.json below it; point at the out_dir (or the -sweep folder) of "
                         f"python -m mmbert_pl.finetune runs")
    runs, problems = [], []
    for path in paths:
        try:
            run = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{path}: not JSON ({e})")
            continue
        missing = [k for k in ("name", "head", "seed", "lr") if k not in run]
        if missing or run.get("head") not in METRICS:
            problems.append(f"{path}: no {missing or 'known head'}; rerun it with this version of finetune")
            continue
        runs.append({**run, "path": str(path)})
    if problems:
        raise ValueError("results that cannot be reported:\n  " + "\n  ".join(problems))
    return runs


def baseline_of(run: dict, metric: str) -> float | None:
    if run["head"] == "sequence":
        return run.get("majority_baseline") if metric == "accuracy" else None
    return run.get("baseline", {}).get(metric)


def report_rows(runs: list[dict]) -> list[ReportRow]:
    by_task: dict[tuple[str, str], dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        by_task[(run["name"], run["head"])][float(run["lr"])].append(run)
    rows = []
    for (task, head), by_lr in sorted(by_task.items()):
        main = MAIN[head]
        lr, chosen = max(by_lr.items(), key=lambda kv: (median(r[main] for r in kv[1]), -kv[0]))
        languages = sorted({k for r in chosen for k in r.get("per_language", {})})
        for metric in METRICS[head]:
            base = [b for r in chosen if (b := baseline_of(r, metric)) is not None]
            rows.append(ReportRow(task, head, "all", metric, median(r[metric] for r in chosen),
                                  median(base) if base else None, len(chosen), lr))
            for lang in languages:
                values = [r["per_language"][lang][metric] for r in chosen if lang in r.get("per_language", {})]
                rows.append(ReportRow(task, head, lang, metric, median(values), None, len(values), lr))
    return rows


def write_report(rows: list[ReportRow], out_dir: str | Path) -> tuple[Path, Path, Path]:
    """report.csv (long: a row per task, language and metric), report.md (a row per task and language, a column
    per metric) and report.png (each task's main metric per language, the baseline dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "report.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "head", "language", "metric", "median", "baseline", "seeds", "lr"])
        for r in rows:
            w.writerow([r.task, r.head, r.language, r.metric, f"{r.median:.4f}",
                        "" if r.baseline is None else f"{r.baseline:.4f}", r.seeds, r.lr])

    lines = ["| task | language | lr | seeds | scores (median over seeds) | baseline |", "|---|---|---|---|---|---|"]
    cells: dict[tuple[str, str], list[ReportRow]] = defaultdict(list)
    for r in rows:
        cells[(r.task, r.language)].append(r)
    for (task, lang), group in cells.items():
        scores = ", ".join(f"{r.metric} {100 * r.median:.1f}" for r in group)
        base = ", ".join(f"{r.metric} {100 * r.baseline:.1f}" for r in group if r.baseline is not None)
        lines.append(f"| {task} ({group[0].head}) | {lang} | {group[0].lr:g} | {group[0].seeds} | {scores} | {base} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")

    tasks = sorted({(r.task, r.head) for r in rows})
    fig, axes = plt.subplots(len(tasks), 1, figsize=(10, 3 * len(tasks)), squeeze=False)
    for ax, (task, head) in zip(axes[:, 0], tasks):
        mine = [r for r in rows if r.task == task and r.metric == MAIN[head]]
        ax.bar([r.language for r in mine], [100 * r.median for r in mine], color=["#444"] + ["#4c78a8"] * (len(mine) - 1))
        if mine[0].baseline is not None:
            ax.axhline(100 * mine[0].baseline, ls="--", c="#d62728", label="baseline")
            ax.legend(loc="lower right")
        ax.set_title(f"{task} ({head}): {MAIN[head]}, median of {mine[0].seeds} seeds at lr {mine[0].lr:g}")
        ax.set_ylim(0, 100)
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=100)
    plt.close(fig)
    return out / "report.csv", out / "report.md", out / "report.png"
