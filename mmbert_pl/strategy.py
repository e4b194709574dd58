"""`trainer.strategy`: Lightning's names, except `fsdp`, which means FSDP2 (`fully_shard`) here.

Lightning's own `fsdp` is FSDP1: it flattens parameters into 1-D shards (weight decay by `ndim` and
StableAdamW's per-tensor clip would see shards, not tensors) and gathers full state dicts through its
deprecated API. FSDP2 keeps every parameter a DTensor of its own shape and name; Lightning runs it as
ModelParallelStrategy with all ranks in one data-parallel dimension (no tensor parallelism), and
`MLMModule.configure_model` shards the encoder (mmbert_pl/sharding.py).
"""
from __future__ import annotations

from omegaconf import DictConfig


def make_strategy(trainer: DictConfig):
    """The Trainer's `strategy` argument for `trainer.strategy`."""
    if trainer.strategy != "fsdp":
        return trainer.strategy
    from lightning.pytorch.strategies import ModelParallelStrategy

    return ModelParallelStrategy(data_parallel_size=trainer.devices * trainer.num_nodes, tensor_parallel_size=1,
                                 save_distributed_checkpoint=False)
