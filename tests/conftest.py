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
