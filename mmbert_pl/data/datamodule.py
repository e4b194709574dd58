"""Language-mixture DataModule over data_prep's shards with MosaicML streaming.

For a language set L and temperature τ it builds fresh `Stream`s with the mixture's proportions,
one `StreamingDataset` and a `StreamingDataLoader` (whose state Lightning saves for exact resume).
Validation is one loader per language over its held-out rows.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, Subset

from mmbert_pl.core.schedules import segment_bounds, value_at
from data_prep.languages import labels_for
from data_prep.manifest import read_manifest

from .mixture import Mixture, temperature_mixture
from .rows import collate_rows


def export_rank_env(trainer: L.Trainer | None) -> None:
    """streaming reads the rank from the environment; Lightning does not set RANK or LOCAL_WORLD_SIZE."""
    if trainer is None:
        return
    os.environ.update(RANK=str(trainer.global_rank), WORLD_SIZE=str(trainer.world_size),
                      LOCAL_RANK=str(trainer.local_rank), LOCAL_WORLD_SIZE=str(trainer.num_devices))


def check_shards(folder: Path) -> None:
    """Every shard named in an MDS index exists with the size the index records (catches missing and truncated files)."""
    index = folder / "index.json"
    fix = f"rerun `python -m data_prep.shards` on {folder.parent.parent} after deleting {folder.parent.name}'s entry from manifest.json"
    if not index.exists():
        raise ValueError(f"shard index {index} is missing; {fix}")
    try:
        shards = json.loads(index.read_text())["shards"]
    except (json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"shard index {index} is corrupt ({e}); {fix}") from None
    for shard in shards:
        # streaming reads the raw file when present (it decompresses next to the zip), else the zip.
        forms = [f for f in (shard["raw_data"], shard.get("zip_data")) if f]
        present = [f for f in forms if (folder / f["basename"]).exists()]
        for stored in present or forms[-1:]:
            path = folder / stored["basename"]
            found = path.stat().st_size if path.exists() else "missing"
            if found != stored["bytes"]:
                raise ValueError(f"shard {path} is {found} bytes, its index says {stored['bytes']}; {fix}")


@dataclass
class Segment:
    """A stretch of the run with one language set and one τ, hence one mixture and one StreamingDataset."""
    start: int                  # tokens, inclusive
    end: int                    # tokens, exclusive
    languages: str | list[str]
    temperature: float
    labels: list[str]
    mixture: Mixture

    @property
    def set_name(self) -> str:
        return "every label" if self.languages is None else str(self.languages)


@functools.cache
def indexed_dataset_class():
    """StreamingDataset whose samples carry their index in the dataset (`sample_id`): the training log
    and the resume tests read which rows each step trained on."""
    from streaming import StreamingDataset

    class IndexedStreamingDataset(StreamingDataset):
        def get_item(self, sample_id: int, retry: int = 7):
            item = super().get_item(sample_id, retry)
            item["sample_id"] = sample_id
            return item

    return IndexedStreamingDataset


def leave_signals_to_the_trainer(worker_id: int) -> None:
    """Loader workers ignore the preemption signals: a cluster's SIGTERM (or `kill` of the process group) reaches
    every process of the job, and a worker it killed would crash the run before `callbacks/preemption.py` saves.
    Lightning's worker seeding (`seed_everything(workers=True)`) still runs."""
    from lightning.fabric.utilities.seed import pl_worker_init_function

    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    pl_worker_init_function(worker_id)


class MixtureDataModule(L.LightningDataModule):
    """Serves segment i of the run as Lightning epoch i (dataloaders reload every epoch).

    Segments come from the language-set and temperature milestones (token counts); each epoch's
    StreamingDataset holds exactly its segment's rows, so the switch happens at the milestone step.
    A hash of the segments goes into the checkpoint: resuming with another mixture is an error,
    never silently repeated data.
    """

    def __init__(self, root: str, languages: str | list[str], temperature: float, budget_tokens: float,
                 micro_batch: int, seed: int = 21, num_workers: int = 0, max_epochs: float = 5.0,
                 num_canonical_nodes: int = 1, vocab_size: int | None = None, boost: dict[str, float] | None = None,
                 language_milestones: list[tuple[float, str | list[str]]] = (),
                 temperature_milestones: list[tuple[float, float]] = (), step_tokens: int | None = None,
                 manifest: dict | None = None, remote: str | None = None) -> None:
        super().__init__()
        self.root, self.remote = Path(root), remote.rstrip("/") if remote else None
        self.budget = budget_tokens
        self.micro_batch, self.seed, self.num_workers = micro_batch, seed, num_workers
        self.max_epochs, self.num_canonical_nodes, self.vocab_size = max_epochs, num_canonical_nodes, vocab_size
        self.boost = boost or {}
        self.manifest = manifest or self._checked_manifest()   # given: a plan over token counts, no shards
        self.step_tokens = step_tokens or micro_batch * self.row_length
        language_milestones, temperature_milestones = sorted(language_milestones, key=lambda m: m[0]), sorted(temperature_milestones)
        self.segments = [
            self._segment(start, end, value_at(start, languages, language_milestones), value_at(start, temperature, temperature_milestones))
            for start, end in segment_bounds(budget_tokens, self.step_tokens, language_milestones, temperature_milestones)
        ]
        self.labels = sorted({k for seg in self.segments for k in seg.labels})
        self.mixture = self.segments[0].mixture
        self._val_dataset = None

    def left_out(self) -> str | None:
        """One line when the named language sets leave labels of the shards out of every segment."""
        out = sorted(set(self.manifest["languages"]) - set(self.labels))
        if not out:
            return None
        sets = sorted({seg.set_name for seg in self.segments})
        return (f"data.languages={', '.join(sets)} leaves out {len(out)} of {len(self.manifest['languages'])} labels of "
                f"{self.root} (e.g. {', '.join(out[:5])}); data.languages=null trains on every label")

    def _stream(self, label: str, split: str, **mix):
        from streaming import Stream

        remote = f"{self.remote}/{label}" if self.remote else None
        # Shards data_prep hashed are checked where streaming reads a file first: on download and on decompressing
        # a local one (folders from before hashes were written have none to check).
        return Stream(remote=remote, local=str(self.root / label), split=split, validate_hash=self.manifest.get("shard_hash"), **mix)

    def _segment(self, start: int, end: int, languages, temperature: float) -> Segment:
        labels = self._resolve_labels(languages)
        tokens = {k: self.manifest["languages"][k]["train"]["tokens"] for k in labels}
        # A boost named by ISO code applies to every script of that language.
        boost = {k: f for code, f in self.boost.items() for k in labels if k == code or k.split("_")[0] == code}
        mixture = temperature_mixture(tokens, temperature, end - start, self.max_epochs, boost)
        return Segment(start, end, languages, temperature, labels, mixture)

    def segment_for(self, tokens: float) -> Segment:
        return next((seg for seg in self.segments if tokens < seg.end), self.segments[-1])

    def mixture_hash(self) -> str:
        """The data by content (tokenizer, each label's training rows), not by path: a moved or re-synced copy of
        the shards resumes, other shards do not."""
        data = [self.manifest["tokenizer"]["sha256"], {k: self.manifest["languages"][k]["train"] for k in self.labels}]
        described = [data, self.seed, self.row_length, self.step_tokens,
                     [(seg.start, seg.end, {k: round(v, 9) for k, v in sorted(seg.mixture.shares.items())}) for seg in self.segments]]
        return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:16]

    def state_dict(self) -> dict:
        return {"mixture_hash": self.mixture_hash()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("mixture_hash") != self.mixture_hash():
            raise ValueError(
                "this run's checkpoint was trained on another data mixture (data root, seed, languages, τ, milestones, "
                "budget or batch geometry changed); resuming would repeat or skip data. Restore the original settings, "
                "or start a new run with another experiment="
            )

    def _checked_manifest(self) -> dict:
        manifest = read_manifest(self.root)
        if manifest is None:
            raise ValueError(f"{self.root} has no manifest.json; build shards with `python -m data_prep.shards --out {self.root} ...`")
        vocab = manifest["tokenizer"]["vocab_size"]
        if self.vocab_size is not None and vocab > self.vocab_size:    # a release pads its vocabulary: larger is fine
            raise ValueError(f"shards in {self.root} were tokenized with a vocab of {vocab}, larger than the model's "
                             f"{self.vocab_size}; use shards made with the model's tokenizer")
        if self.remote is None:         # a remote's shards come down as they are read (streaming checks them)
            for label, entry in manifest["languages"].items():
                for split in ("train", "val"):
                    if entry[split]["rows"]:
                        check_shards(self.root / label / split)
        return manifest

    def _resolve_labels(self, languages: str | list[str]) -> list[str]:
        available = sorted(self.manifest["languages"])
        if languages is None:
            return available
        labels = labels_for(languages, available) if isinstance(languages, str) else list(languages)
        missing = sorted(set(labels) - set(available))
        if missing:
            raise ValueError(f"languages {missing} have no data in {self.root}; it holds {available}")
        if not labels:
            raise ValueError(f"language set {languages!r} matches none of the {len(available)} languages in {self.root}")
        return labels

    @property
    def row_length(self) -> int:
        return self.manifest["row_length"]

    def train_dataloader(self):
        from streaming import StreamingDataLoader

        export_rank_env(self.trainer)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        seg = self.segments[min(epoch, len(self.segments) - 1)]
        streams = [self._stream(k, "train", proportion=seg.mixture.shares[k]) for k in seg.labels]
        rows = max(1, (seg.end - seg.start) // self.row_length)
        ds = indexed_dataset_class()(streams=streams, epoch_size=rows, shuffle=True, shuffle_seed=self.seed,
                              batch_size=self.micro_batch, num_canonical_nodes=self.num_canonical_nodes)
        return StreamingDataLoader(ds, batch_size=self.micro_batch, collate_fn=collate_rows,
                                   num_workers=self.num_workers, drop_last=True, worker_init_fn=leave_signals_to_the_trainer)

    def val_labels(self) -> list[str]:
        return [k for k in self.labels if self.manifest["languages"][k]["val"]["rows"] > 0]

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per language, all reading one StreamingDataset by sample id.

        Each StreamingDataset holds its shared memory (dozens of file descriptors) for the life of the
        process, so a dataset per language would exhaust descriptors at mmBERT's 1833 languages.
        """
        from streaming import StreamingDataset

        export_rank_env(self.trainer)
        labels = self.val_labels()
        if self._val_dataset is None:      # one for the run: it never changes (and a remote allows one per folder)
            self._val_dataset = StreamingDataset(streams=[self._stream(k, "val") for k in labels], shuffle=False,
                                                 batch_size=self.micro_batch, num_canonical_nodes=self.num_canonical_nodes)
        ds = self._val_dataset
        return [DataLoader(Subset(ds, range(int(start), int(start + n))), batch_size=self.micro_batch, collate_fn=collate_rows)
                for start, n in zip(ds.sample_offset_per_stream, ds.samples_per_stream)]
