"""Who may import whom: the schedule mathematics lives in `mmbert_pl/schedules.py`; the library (model, data,
module, geometry, config) never imports `callbacks/`, which only `run.py` and `run_plan.py` (the composition
root: they build the Trainer's callbacks) do; `callbacks/` reaches `data_prep/` only through `mmbert_pl`."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPOSITION_ROOT = {"mmbert_pl/run.py", "mmbert_pl/run_plan.py"}


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_library_does_not_import_callbacks() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "mmbert_pl").rglob("*.py")
                 if str(p.relative_to(ROOT)) not in COMPOSITION_ROOT and "callbacks" in imported_packages(p)]
    assert offenders == []


def test_callbacks_do_not_reach_into_data_prep() -> None:
    offenders = [p.name for p in (ROOT / "callbacks").glob("*.py") if "data_prep" in imported_packages(p)]
    assert offenders == []


def test_schedule_functions_live_in_one_module() -> None:
    for p in (ROOT / "callbacks").glob("*.py"):
        tree = ast.parse(p.read_text())
        functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert not [f for f in functions if f.endswith("_at") or f in ("lr_factor", "segment_bounds")], p.name
