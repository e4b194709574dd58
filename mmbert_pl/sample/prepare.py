"""The bundled sample, tokenized and packed once into a cache folder, so a bare `python -m mmbert_pl.run` works offline."""
from __future__ import annotations

from pathlib import Path

from data_prep.shards import ShardSettings, build_shards
from data_prep.tokenizer_training import train_tokenizer

SAMPLE_TEXT = Path(__file__).resolve().parent / "ntrex"


def prepare_sample(cache_dir: str | Path, vocab_size: int, row_length: int, val_fraction: float) -> Path:
    """A shard folder of the sample (its tokenizer and held-out parallel lines inside); reuses what a previous run completed."""
    root = Path(cache_dir) / f"sample2-v{vocab_size}"      # 2: the streamed tokenizer sample, self-contained shard folders
    tokenizer = root / "tokenizer.model"          # one tokenizer for every row length: stages can chain
    if not tokenizer.exists():
        print(f"preparing the bundled sample in {root} (first use: tokenizer, then shards)")
        train_tokenizer(SAMPLE_TEXT, tokenizer, vocab_size=vocab_size, sample_chars=1_500_000)
    shards = root / f"shards-r{row_length}-val{val_fraction:g}"
    # One process: this runs inside a training process (torch threads, maybe a sweep's second job), where
    # forking workers can deadlock; the sample is small enough that it takes a few seconds anyway.
    build_shards(SAMPLE_TEXT, tokenizer, shards, ShardSettings(row_length=row_length, val_fraction=val_fraction, parallel=True),
                 workers=1, command=["mmbert_pl.sample.prepare.prepare_sample"], show_progress=False)
    return shards
