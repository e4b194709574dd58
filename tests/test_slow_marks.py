"""The fast subset (`-m "not slow"`) trains nothing: a test that fits a Trainer or runs a training CLI to its end
(`finished`, `launch`) carries `@pytest.mark.slow` (tests taking `trained_run` are marked by conftest). Read from the
source here; conftest's `fast_tests_train_nothing` also fails an unmarked test whose Trainer fits in the test process."""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TRAINS = (".fit(", "finished(", "launch(")


def unmarked_training_tests() -> list[str]:
    found = []
    for path in sorted(TESTS.rglob("test_*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        module_slow = any(isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n.targets[0]) and "slow" in ast.unparse(n.value)
                          for n in tree.body)
        for node in tree.body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            slow = module_slow or any("slow" in ast.unparse(d) for d in node.decorator_list)
            body = ast.get_source_segment(source, node)
            if not slow and any(t in body for t in TRAINS):
                found.append(f"{path.relative_to(TESTS)}::{node.name}")
    return found


def test_every_training_test_is_marked_slow() -> None:
    assert unmarked_training_tests() == []
