"""Cross-lingual retrieval on a parallel corpus (XTREME's Tatoeba/BUCC style accuracy@1).

A corpus is a folder in the ntrex layout: one `<lang>_<Script>.txt` per language, line i of every
file the same document (a file may stop early, as in the bundled sample: a language is scored on
the lines it shares with the pivot). Each language's documents retrieve their English counterparts
by cosine similarity of embeddings (x -> eng) and English documents retrieve theirs (eng -> x).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class RetrievalScore:
    label: str
    to_pivot: float      # accuracy@1 of this language's documents retrieving the pivot's
    from_pivot: float    # accuracy@1 of the pivot's documents retrieving this language's
    docs: int

    @property
    def mean(self) -> float:
        return (self.to_pivot + self.from_pivot) / 2


def read_parallel(folder: str | Path, languages: list[str] | None = None, indices: set[int] | None = None,
                  max_docs: int | None = None) -> dict[str, dict[int, str]]:
    """label -> {line number: document}; `indices` keeps those lines (e.g. held-out ones), `max_docs` the first N."""
    folder = Path(folder)
    files = {p.stem: p for p in sorted(folder.glob("*.txt"))}
    if not files:
        raise ValueError(f"{folder} holds no <lang>_<Script>.txt files (the ntrex layout: line i of every file is the same document)")
    missing = sorted(set(languages or []) - set(files))
    if missing:
        raise ValueError(f"{folder} has no file for {missing}; it holds {sorted(files)}")
    out = {}
    for label in languages or sorted(files):
        lines = files[label].read_text(encoding="utf-8").splitlines()
        keep = [i for i in range(len(lines)) if (indices is None or i in indices) and lines[i].strip()]
        out[label] = {i: lines[i] for i in keep[:max_docs]}
    return out


def held_out(folder: str | Path, settings: dict, languages: list[str] | None = None) -> dict[str, dict[int, str]]:
    """The lines of a corpus that `data_prep.shards` with these manifest settings held out of training, by the
    rule of `data_prep/holdout.py` (one score per line number, so the same lines in every language)."""
    from data_prep.holdout import fraction_rule, holdout_score

    seed, out = settings["seed"], {}
    for label, lines in read_parallel(folder, languages).items():
        if settings.get("val_docs") is not None:
            keep = set(sorted(lines, key=lambda i: holdout_score(seed, i))[: settings["val_docs"]])
        else:
            extra, _ = fraction_rule(seed, settings["val_fraction"], [(0, i) for i in lines])
            keep = {i for i in lines if holdout_score(seed, i) < settings["val_fraction"] or (0, i) == extra}
        out[label] = {i: t for i, t in lines.items() if i in keep}
    return out


def accuracy_at_1(queries: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of rows i whose most cosine-similar target is row i (the first on a tie)."""
    q = torch.nn.functional.normalize(queries.float(), dim=1)
    t = torch.nn.functional.normalize(targets.float(), dim=1)
    hits = (q @ t.T).argmax(dim=1) == torch.arange(len(q))
    return float(hits.float().mean())


def retrieval_scores(embeddings: dict[str, tuple[list[int], torch.Tensor]], pivot: str = "eng_Latn") -> list[RetrievalScore]:
    """Per language, over the lines it shares with the pivot: label -> (line numbers, embeddings)."""
    if pivot not in embeddings:
        raise ValueError(f"pivot language {pivot} is not among the embedded languages {sorted(embeddings)[:8]}...")
    pivot_rows = {line: row for row, line in enumerate(embeddings[pivot][0])}
    scores = []
    for label, (lines, emb) in sorted(embeddings.items()):
        shared = [(row, pivot_rows[line]) for row, line in enumerate(lines) if line in pivot_rows]
        if label == pivot or len(shared) < 2:
            continue
        mine = emb[[r for r, _ in shared]]
        theirs = embeddings[pivot][1][[r for _, r in shared]]
        scores.append(RetrievalScore(label, accuracy_at_1(mine, theirs), accuracy_at_1(theirs, mine), len(shared)))
    return scores


def table(scores: list[RetrievalScore], pivot: str) -> str:
    lines = [f"{'language':10} {'docs':>5} {'→' + pivot[:3]:>8} {pivot[:3] + '→':>8} {'mean':>6}"]
    lines += [f"{s.label:10} {s.docs:5d} {s.to_pivot:8.1%} {s.from_pivot:8.1%} {s.mean:6.1%}" for s in scores]
    if scores:
        n = len(scores)
        lines.append(f"{'macro':10} {'':5} {sum(s.to_pivot for s in scores) / n:8.1%} "
                     f"{sum(s.from_pivot for s in scores) / n:8.1%} {sum(s.mean for s in scores) / n:6.1%}")
    return "\n".join(lines)


def write_report(scores: list[RetrievalScore], pivot: str, out_dir: str | Path) -> tuple[Path, Path]:
    """retrieval.csv (a row per language and a macro row) and retrieval.png (bars per language)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "retrieval.csv", out / "retrieval.png"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["language", "docs", f"to_{pivot}", f"from_{pivot}", "mean"])
        for s in scores:
            w.writerow([s.label, s.docs, f"{s.to_pivot:.4f}", f"{s.from_pivot:.4f}", f"{s.mean:.4f}"])
        n = max(len(scores), 1)
        w.writerow(["macro", sum(s.docs for s in scores), f"{sum(s.to_pivot for s in scores) / n:.4f}",
                    f"{sum(s.from_pivot for s in scores) / n:.4f}", f"{sum(s.mean for s in scores) / n:.4f}"])
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(scores) + 2), 4))
    x = torch.arange(len(scores)).float()
    ax.bar(x - 0.2, [s.to_pivot for s in scores], 0.4, label=f"→ {pivot}")
    ax.bar(x + 0.2, [s.from_pivot for s in scores], 0.4, label=f"{pivot} →")
    ax.set_xticks(x.tolist(), [s.label for s in scores], rotation=90, fontsize=7)
    ax.set_ylabel("accuracy@1")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return csv_path, png_path
