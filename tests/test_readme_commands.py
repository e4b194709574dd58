"""CI runs exactly the README's test command first, and nothing the README does not show; every command block
in the README and docs/ names the test that runs it (`<!-- run by: tests/FILE.py::TEST -->` on the line above
the block), and that test exists and runs the block's programs. A block that cannot run here says why
(`<!-- not run here: … -->`, a cluster), naming the test that runs the same thing on one machine."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"<!-- (run by|not run here): .*?(tests/[\w/]+\.py)::(\w+).*?-->")


def command_blocks(page: Path) -> list[tuple[int, str, str]]:
    """(line number, the line above the block, the block's text) of every fenced block that shows a command."""
    lines, blocks, i = page.read_text().splitlines(), [], 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("```"))
            body = "\n".join(lines[i + 1:end])
            if re.search(r"python3? -m |\bpython [\w/]+\.py|\bbash |\bsrun ", body):
                blocks.append((i + 1, lines[i - 1] if i else "", body))
            i = end
        i += 1
    return blocks


def programs(block: str) -> set[str]:
    """The modules and scripts a block runs: `mmbert_pl.run`, `data_prep.shards`, `benchmarks/x.py`."""
    return set(re.findall(r"-m ((?:mmbert_pl|data_prep)\.\w+)", block)) | set(re.findall(r"(benchmarks/\w+\.(?:py|sh))", block))


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = [l for l in (ROOT / ".ci/run").read_text().splitlines() if l and not l.startswith(("#", "set ", "cd "))]
    readme = (ROOT / "README.md").read_text()
    assert ci_lines[0] == "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q"
    assert [line for line in ci_lines if line not in readme] == []


def test_every_command_block_names_the_test_that_runs_it() -> None:
    problems = []
    for page in PAGES:
        for line, above, block in command_blocks(page):
            where = f"{page.relative_to(ROOT)}:{line}"
            mark = MARK.search(above)
            if mark is None:
                problems.append(f"{where}: no <!-- run by: tests/…::test_… --> above the block")
                continue
            test_file = ROOT / mark[2]
            if not test_file.is_file() or f"def {mark[3]}(" not in test_file.read_text():
                problems.append(f"{where}: {mark[2]}::{mark[3]} does not exist")
                continue
            source = test_file.read_text() + (ROOT / "tests" / "conftest.py").read_text() + (ROOT / ".ci" / "run").read_text()
            missing = [p for p in programs(block) if p not in source and p.replace(".", "/", 1) not in source]
            if missing:
                problems.append(f"{where}: {mark[2]} never runs {missing}")
    assert problems == []


def test_the_check_sees_blocks_and_their_programs() -> None:
    readme = command_blocks(ROOT / "README.md")
    assert len(readme) >= 8 and all(MARK.search(above) for _, above, _ in readme)
    assert programs("python -m mmbert_pl.merge ties\npython -m data_prep.shards --x\npython benchmarks/mlm_loss.py") == \
        {"mmbert_pl.merge", "data_prep.shards", "benchmarks/mlm_loss.py"}
