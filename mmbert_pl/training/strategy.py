"""`trainer.strategy`: Lightning's names, except `fsdp`, which means FSDP2 (`fully_shard`) here.

Lightning's own `fsdp` is FSDP1: it flattens parameters into 1-D shards (weight decay by `ndim` and
StableAdamW's per-tensor clip would see shards, not tensors) and gathers full state dicts through its
deprecated API. FSDP2 keeps every parameter a DTensor of its own shape and name; Lightning runs it as
ModelParallelStrategy with all ranks in one data-parallel dimension (no tensor parallelism), and
`MLMModule.configure_model` shards the encoder (mmbert_pl/training/sharding.py).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from lightning.pytorch.strategies import ModelParallelStrategy
from omegaconf import DictConfig

from mmbert_pl.files.checkpointing import move_into_place, remove_checkpoint


class FSDP2Strategy(ModelParallelStrategy):
    """ModelParallelStrategy whose checkpoints, consolidated (one file from rank 0) or sharded (a folder every
    rank writes its shards into), are written under `NAME.tmp` and moved into place once complete: a kill at any
    moment leaves the previous checkpoint whole. Lightning's own sharded save writes over the previous folder."""

    def __init__(self, ranks: int, sharded_checkpoints: bool) -> None:
        super().__init__(data_parallel_size=ranks, tensor_parallel_size=1, save_distributed_checkpoint=sharded_checkpoints)

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath, storage_options: Any | None = None) -> None:
        path = Path(self.broadcast(str(filepath)))
        tmp = path.with_name(path.name + ".tmp")
        if self.global_rank == 0:
            remove_checkpoint(tmp)       # what a killed save left
        self.barrier()
        super().save_checkpoint(checkpoint, tmp, storage_options)
        self.barrier()                   # every rank's shards are written
        if self.global_rank == 0:
            move_into_place(tmp, path)

    @contextlib.contextmanager
    def consolidated(self) -> Iterator[None]:
        """Saves inside write one consolidated file, whatever `trainer.checkpoint_format` (the run's final
        last.ckpt, which init_from=, merge and evaluate read)."""
        sharded, self._save_distributed_checkpoint = self._save_distributed_checkpoint, False
        try:
            yield
        finally:
            self._save_distributed_checkpoint = sharded


def make_strategy(trainer: DictConfig):
    """The Trainer's `strategy` argument for `trainer.strategy`."""
    if trainer.strategy != "fsdp":
        return trainer.strategy
    return FSDP2Strategy(trainer.devices * trainer.num_nodes, sharded_checkpoints=trainer.checkpoint_format == "sharded")
