"""`python -m mmbert_pl.recipe [recipe=miniature|mmbert] [overrides ...]`: mmBERT's recipe as one command.

Runs every stage of `conf/recipe/<recipe>.yaml` as its own `python -m mmbert_pl.run` (each from the previous
stage's last.ckpt, with its optimizer state), TIES-merges the decays against the end of ext, evaluates every
stage's export and the merge (per-language MLM loss, retrieval), and writes `<runs>/<name>/report.md` and
`report.png`. Overrides go to every stage (`model=small`, `trainer=gpu`, `data.root=...`); `stage_roots.NAME=DIR`
gives one stage its own shards. Run again, it resumes what is unfinished and skips what is done: a stage that
this very command finished reports so without starting its process, a merge or evaluation whose files are there is
not redone. The merge and the evaluations run in the recipe's own process.
"""
from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

RECIPES = Path(__file__).resolve().parents[1] / "conf" / "recipe"


def parse(argv: list[str]) -> tuple[str, dict[str, str], list[str], Path]:
    """(recipe name, {stage: shard root}, overrides for every stage, runs folder)."""
    name, roots, overrides = "miniature", {}, []
    runs = Path(os.environ.get("MMBERT_RUNS", "runs"))
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "recipe":
            name = value
        elif key.startswith("stage_roots."):
            roots[key.split(".", 1)[1]] = value
        elif key.lstrip("+") in ("run_dir", "experiment", "init_from", "init_weights_only"):
            raise ValueError(f"{arg}: the recipe sets {key} for each stage itself")
        else:
            if key == "runs_dir":
                runs = Path(value)
            overrides.append(arg)
    if not (RECIPES / f"{name}.yaml").is_file():
        raise ValueError(f"recipe={name}: choose one of {sorted(p.stem for p in RECIPES.glob('*.yaml'))}")
    return name, roots, overrides, runs


class Recipe:
    def __init__(self, name: str, roots: dict[str, str], overrides: list[str], runs: Path) -> None:
        self.spec = OmegaConf.load(RECIPES / f"{name}.yaml")
        self.folder = runs / self.spec.name
        self.overrides, self.roots = overrides, roots
        self.commands: list[str] = []
        unknown = sorted(set(roots) - {s.name for s in self.spec.stages})
        if unknown:
            raise ValueError(f"stage_roots: no stage named {unknown} in recipe {name}; its stages are {[s.name for s in self.spec.stages]}")

    def record(self, module: str, args: list[str]) -> str:
        """`python -m MODULE ARGS` as the report's command list and the log show it."""
        shown = " ".join(shlex.quote(c) for c in ["python", "-m", module, *args])
        self.commands.append(shown)
        return shown

    def run(self, what: str, module: str, args: list[str]) -> None:
        """One step of the recipe, in its own process; its output streams through; a failure stops the recipe."""
        print(f"\n== {what}: {self.record(module, args)}", flush=True)
        code = subprocess.run([sys.executable, "-m", module, *args]).returncode
        if code:
            raise SystemExit(f"recipe stopped: {what} exited with {code} (rerun the same command to resume)")

    def here(self, what: str, module: str, args: list[str]) -> None:
        """`python -m MODULE ARGS` (evaluate or merge), run in this process: a process of its own would spend most of
        its time importing what this one has (13 of them for the miniature recipe). Shown and recorded as that command."""
        from importlib import import_module

        main = import_module("mmbert_pl.evaluate.cli" if module == "mmbert_pl.evaluate" else module).main
        print(f"\n== {what}: {self.record(module, args)}", flush=True)
        try:
            main(args)
        except SystemExit as e:
            if e.code:
                raise SystemExit(f"recipe stopped: {what} exited with {e.code} (rerun the same command to resume)") from None

    def finished_with(self, name: str, args: list[str]) -> dict | None:
        """finished.json of stage `name` when its run was this very command (the overrides its .hydra/ recorded) and
        its results still load: what the stage's own process would find, without starting one (and its ranks)."""
        from mmbert_pl.run import finished_result

        folder = self.stage_dir(name)
        recorded = folder / ".hydra" / "overrides.yaml"
        if not recorded.is_file() or list(OmegaConf.load(recorded)) != args:
            return None
        return finished_result(folder / "finished.json")

    def stage_dir(self, name: str) -> Path:
        return self.folder / name

    def train(self) -> None:
        for stage in self.spec.stages:
            args = [f"+stage={stage.stage}", f"run_dir={self.stage_dir(stage.name)}", *self.spec.common, *stage.overrides]
            if stage["from"]:
                args.append(f"init_from={self.stage_dir(stage['from']) / 'checkpoints' / 'last.ckpt'}")
            if stage.name in self.roots:
                args.append(f"data.root={self.roots[stage.name]}")
            args += self.overrides
            done = self.finished_with(stage.name, args)
            if done is None:
                self.run(f"stage {stage.name}", "mmbert_pl.run", args)
                continue
            self.record("mmbert_pl.run", args)
            print(f"\n== stage {stage.name}: already finished at step {done['step']} by this command: checkpoint "
                  f"{done['checkpoint']}, Hugging Face export {done['hf_export']}", flush=True)

    def finished(self, name: str) -> dict:
        return json.loads((self.stage_dir(name) / "finished.json").read_text())

    def merge(self) -> Path:
        from mmbert_pl.files.hf import export_problem

        m, out = self.spec.merge, self.folder / "merged"
        if (out / "model.ckpt").is_file() and export_problem(out / "hf") is None:
            print(f"\n== merge: {out} is there already")
            return out
        models = [self.finished(n)["checkpoint"] for n in m.models]
        self.here("merge", "mmbert_pl.merge", [m.method, "--base", self.finished(m.base)["checkpoint"], "--models", *models,
                                               "--density", str(m.density), "--out", str(out), "--overwrite"])
        return out

    def evaluate(self, models: dict[str, str]) -> dict[str, dict[str, float]]:
        from mmbert_pl.sample.prepare import SAMPLE_TEXT

        e = self.spec.evaluate
        data = self.finished(e.data_stage)["data_root"]
        corpus = e.retrieval_corpus or str(SAMPLE_TEXT)
        scores = {}
        for name, model in models.items():
            out = self.folder / "eval" / name
            if not (out / "mlm.csv").is_file():
                self.here(f"MLM of {name}", "mmbert_pl.evaluate", ["mlm", "--model", model, "--data", data, "--out", str(out),
                                                      "--mask-ratio", str(e.mask_ratio), "--max-rows", str(e.max_rows)])
            if not (out / "retrieval.csv").is_file():
                self.here(f"retrieval of {name}", "mmbert_pl.evaluate", ["retrieval", "--model", model, "--corpus", corpus, "--held-out-of",
                                                            data, "--out", str(out), "--max-tokens", str(e.max_tokens)])
            scores[name] = {**macro(out / "mlm.csv", {"loss": "mlm_loss", "accuracy": "mlm_accuracy"}),
                            **macro(out / "retrieval.csv", {"mean": "retrieval_acc@1"})}
        return scores

    def report(self, scores: dict[str, dict[str, float]], seconds: float) -> Path:
        rows = []
        for name in scores:
            if name == "merged":
                rows.append((name, "TIES of " + ", ".join(self.spec.merge.models) + f" on {self.spec.merge.base}", "", ""))
            else:
                f = self.finished(name)
                rows.append((name, self.stage_of(name), f"{f['step']:,}", f"{f['budget']:,.0f}"))
        metrics = ["mlm_loss", "mlm_accuracy", "retrieval_acc@1"]
        lines = [f"# Recipe `{self.spec.name}`", "",
                 f"Written by `python -m mmbert_pl.recipe`; this invocation took {seconds / 60:.1f} min. Every model is scored "
                 f"on the same held-out rows ({self.spec.evaluate.data_stage}'s shards, {self.spec.evaluate.mask_ratio:.0%} "
                 f"fixed masks) and the same held-out parallel lines.", "",
                 "| model | stage | steps | tokens | " + " | ".join(metrics) + " |",
                 "|---|---|---:|---:|" + "---:|" * len(metrics)]
        for (name, stage, steps, tokens) in rows:
            lines.append(f"| {name} | {stage} | {steps} | {tokens} | " + " | ".join(f"{scores[name][m]:.4f}" for m in metrics) + " |")
        lines += ["", "![scores](report.png)", "", "## Commands", "", "```", *self.commands, "```", ""]
        path = self.folder / "report.md"
        path.write_text("\n".join(lines))
        plot(scores, metrics, self.folder / "report.png")
        return path

    def stage_of(self, name: str) -> str:
        return next(s.stage for s in self.spec.stages if s.name == name)


def macro(path: Path, columns: dict[str, str]) -> dict[str, float]:
    row = next(r for r in csv.DictReader(path.open()) if r["language"] == "macro")
    return {new: float(row[old]) for old, new in columns.items()}


def plot(scores: dict[str, dict[str, float]], metrics: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.5))
    names = list(scores)
    for ax, metric in zip(axes, metrics):
        ax.bar(range(len(names)), [scores[n][metric] for n in names])
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    from mmbert_pl.core.bad_input import exit_on_bad_input

    started = time.monotonic()
    with exit_on_bad_input():
        recipe = Recipe(*parse(sys.argv[1:] if argv is None else argv))
    recipe.train()
    merged = recipe.merge()
    models = {s.name: recipe.finished(s.name)["hf_export"] for s in recipe.spec.stages}
    scores = recipe.evaluate({**models, "merged": str(merged / "hf")})
    path = recipe.report(scores, time.monotonic() - started)
    print(f"\nwrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    from data_prep.quick_exit import freeze_at_exit

    freeze_at_exit()
    main()
