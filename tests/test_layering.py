"""Who may import whom, between folders (docs/internals.md, "The layout"). Each folder lists the folders it may
import; the table is a ladder (no arrow runs both ways, even through a third folder). The top of `mmbert_pl/`
holds only the commands a user types and run's composition (`run_plan.py`), which may import anything."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"run", "run_plan", "plan", "recipe", "merge", "shrink", "consolidate"}   # plus finetune/, evaluate/

MODEL, CORE, SAMPLE, FILES, DATA = "mmbert_pl.model", "mmbert_pl.core", "mmbert_pl.sample", "mmbert_pl.files", "mmbert_pl.data"
EMBEDDINGS, TRAINING, FINETUNE, EVALUATE = "mmbert_pl.embeddings", "mmbert_pl.training", "mmbert_pl.finetune", "mmbert_pl.evaluate"
MAY_IMPORT: dict[str, set[str]] = {
    "data_prep": set(),
    MODEL: set(),
    CORE: {"data_prep"},
    SAMPLE: {"data_prep"},
    FILES: {MODEL, CORE, "data_prep"},
    DATA: {MODEL, CORE, "data_prep"},
    EMBEDDINGS: {MODEL, CORE, FILES, "data_prep"},
    TRAINING: {MODEL, CORE, SAMPLE, FILES, DATA, EMBEDDINGS, "data_prep"},
    "callbacks": {MODEL, CORE, FILES, EMBEDDINGS, TRAINING},        # data_prep only through mmbert_pl
    FINETUNE: {MODEL, CORE, SAMPLE, FILES, DATA, EMBEDDINGS, "data_prep"},
    EVALUATE: {MODEL, CORE, SAMPLE, FILES, DATA, EMBEDDINGS, TRAINING, FINETUNE, "data_prep"},
}


def unit_of(path: Path) -> str:
    """The folder a file belongs to (`mmbert_pl.training`), or `mmbert_pl:NAME` for a module at the package top."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "mmbert_pl":
        return f"mmbert_pl.{parts[1]}" if len(parts) > 2 else f"mmbert_pl:{parts[1].removesuffix('.py')}"
    return parts[0]


def unit_of_module(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] in ("callbacks", "data_prep"):
        return parts[0]
    if parts[0] != "mmbert_pl" or len(parts) == 1:
        return None
    return f"mmbert_pl.{parts[1]}" if (ROOT / "mmbert_pl" / parts[1]).is_dir() else f"mmbert_pl:{parts[1]}"


def imports(path: Path) -> set[str]:
    """The first-party units `path` imports (relative imports stay inside a folder)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {u for u in map(unit_of_module, names) if u is not None}


def first_party_files() -> list[Path]:
    return [p for top in ("mmbert_pl", "callbacks", "data_prep") for p in (ROOT / top).rglob("*.py")]


def test_every_import_between_folders_is_allowed() -> None:
    wrong = []
    for path in first_party_files():
        unit = unit_of(path)
        if unit.startswith("mmbert_pl:"):
            continue                                   # the commands compose everything
        allowed = MAY_IMPORT[unit] | {unit}
        wrong += [f"{path.relative_to(ROOT)} imports {u}" for u in imports(path) - allowed]
    assert wrong == []


def test_the_allowed_arrows_form_a_ladder() -> None:
    def reachable(unit: str) -> set[str]:
        seen, todo = set(), list(MAY_IMPORT[unit])
        while todo:
            u = todo.pop()
            if u not in seen:
                seen.add(u)
                todo += MAY_IMPORT[u]
        return seen
    assert [u for u in MAY_IMPORT if u in reachable(u)] == []


def test_every_folder_is_placed_and_the_top_holds_only_commands() -> None:
    folders = {f"mmbert_pl.{p.name}" for p in (ROOT / "mmbert_pl").iterdir() if (p / "__init__.py").is_file()}
    assert folders == {u for u in MAY_IMPORT if u.startswith("mmbert_pl.")}
    top = {p.stem for p in (ROOT / "mmbert_pl").glob("*.py")} - {"__init__"}
    assert top == COMMANDS
    for command in ("finetune", "evaluate"):
        assert (ROOT / "mmbert_pl" / command / "__main__.py").is_file()


def test_schedule_functions_live_in_one_module() -> None:
    for p in (ROOT / "callbacks").glob("*.py"):
        tree = ast.parse(p.read_text())
        functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert not [f for f in functions if f.endswith("_at") or f in ("lr_factor", "segment_bounds")], p.name
