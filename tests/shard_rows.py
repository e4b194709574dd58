"""Reading whole shard folders back in tests."""
from __future__ import annotations

from pathlib import Path

from data_prep.manifest import read_manifest


def rows_of(root: Path) -> dict[str, list[bytes]]:
    """Every training row per language, through one StreamingDataset (each holds file descriptors for good)."""
    from streaming import Stream, StreamingDataset

    labels = sorted(read_manifest(root)["languages"])
    ds = StreamingDataset(streams=[Stream(local=str(root / k), split="train") for k in labels], shuffle=False, batch_size=1)
    return {k: [ds[i]["input_ids"].tobytes() for i in range(int(start), int(start + n))]
            for k, start, n in zip(labels, ds.sample_offset_per_stream, ds.samples_per_stream)}
