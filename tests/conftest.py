"""Shared fixtures: one tokenizer and one shard folder built from the bundled sample per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.shards import ShardSettings, build_shards

SAMPLE = Path(__file__).resolve().parents[1] / "mmbert_pl" / "sample" / "ntrex"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def tokenizer_model(prepared_sample: Path) -> Path:
    """The sample's 4,096-piece tokenizer: the one a bare run trains (trained once, in `prepared_sample`)."""
    return prepared_sample / "sample2-v4096" / "tokenizer.model"


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory, tokenizer_model: Path) -> Path:
    out = tmp_path_factory.mktemp("shards")
    build_shards(SAMPLE, tokenizer_model, out, ShardSettings(row_length=1024, val_fraction=0.1), workers=2, show_progress=False)
    return out


@pytest.fixture(scope="session")
def prepared_sample(tmp_path_factory) -> Path:
    """The data cache a bare `python -m mmbert_pl.run` prepares (the sample's tokenizer and its shards at the
    default row length), plus the shards at 128 tokens that the process tests train on (`SHORT_ROWS`: a step a
    quarter of the cost), built once per session; tests take a copy (`sample_cache`)."""
    from mmbert_pl.sample.prepare import prepare_sample
    from mmbert_pl.training.config_schema import SampleConf

    cache, s = tmp_path_factory.mktemp("prepared-cache"), SampleConf()
    for row_length in (s.row_length, 128):
        prepare_sample(cache, s.vocab_size, row_length, s.val_fraction)
    return cache


@pytest.fixture
def sample_cache(prepared_sample: Path, tmp_path: Path) -> Path:
    """This test's own copy of the prepared cache (a run may add shards of another row length to it)."""
    import shutil

    return Path(shutil.copytree(prepared_sample, tmp_path / "cache"))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, prepared_sample: Path) -> Path:
    """The README's main job, `python -m mmbert_pl.run` with no overrides (300 steps of `tiny`), run once in this
    process: its run directory (checkpoints/last.ckpt, hf/ with the tokenizer) feeds the model-tool tests."""
    import os
    import shutil

    from tests.in_process import cli
    from tests.processes import finished

    base = tmp_path_factory.mktemp("trained")
    shutil.copytree(prepared_sample, base / "cache")
    env = {**os.environ, "MMBERT_RUNS": str(base / "runs"), "MMBERT_CACHE": str(base / "cache")}
    return finished(["trainer.progress_bar=false"], env, "the main job", cli)


@pytest.fixture(autouse=True)
def fast_tests_train_nothing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast subset (`-m "not slow"`) trains nothing: a test without the slow mark that fits a Trainer in this
    process (a command run by tests.in_process included) fails, naming the mark. Processes of their own are
    checked by tests/test_slow_marks.py."""
    if request.node.get_closest_marker("slow"):
        return
    from lightning.pytorch import Trainer

    def refused(*args, **kwargs) -> None:
        raise AssertionError(f"{request.node.nodeid} trains: mark it @pytest.mark.slow")

    monkeypatch.setattr(Trainer, "fit", refused)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the trained default run is slow (the run takes a minute or more), marked or not."""
    for item in items:
        if "trained_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
