"""Shared fixtures: one tokenizer and one shard folder built from the bundled sample per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.shards import ShardSettings, build_shards
from data_prep.tokenizer import train_tokenizer

SAMPLE = Path(__file__).resolve().parents[1] / "mmbert_pl" / "sample" / "ntrex"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def tokenizer_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "sample.model"
    train_tokenizer(SAMPLE, out, vocab_size=4096, sample_chars=1_500_000)
    return out


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory, tokenizer_model: Path) -> Path:
    out = tmp_path_factory.mktemp("shards")
    build_shards(SAMPLE, tokenizer_model, out, ShardSettings(row_length=1024, val_fraction=0.1), workers=2, show_progress=False)
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """The README's main job, `python -m mmbert_pl.run` with no overrides (300 steps of `tiny`), run once:
    its run directory (checkpoints/last.ckpt, hf/ with the tokenizer) feeds the model-tool tests."""
    import os
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("trained")
    env = {**os.environ, "MMBERT_RUNS": str(base / "runs"), "MMBERT_CACHE": str(base / "cache")}
    result = subprocess.run([sys.executable, "-m", "mmbert_pl.run", "trainer.progress_bar=false"],
                            capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "runs" / "sample"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the trained default run is slow (the run takes a minute or more), marked or not."""
    for item in items:
        if "trained_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
