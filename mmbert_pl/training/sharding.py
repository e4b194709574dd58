"""FSDP2 (`fully_shard`) for the encoder: which groups, and how full tensors come back out.

One FSDP group per encoder layer (all-gathered just before its forward and backward, freed after), and the
root group for the rest: embeddings, final norm, MLM head and decoder bias. The decoder weight is tied to the
token embedding, so both must live in the root group, which stays gathered for the whole forward. Parameter
names, shapes and `ndim` are those of the unsharded model (DTensors), so weight-decay groups, checkpoints
and exports are the same under FSDP as under DDP.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_optimizer_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from mmbert_pl.model import MMBertForMaskedLM


def shard_model(model: MMBertForMaskedLM, mesh: DeviceMesh) -> None:
    """In place: every layer its own group, the root group last."""
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)


def is_sharded(model: nn.Module) -> bool:
    return any(isinstance(p, DTensor) for p in model.parameters())


def unsharded_copy(model: MMBertForMaskedLM) -> MMBertForMaskedLM | None:
    """A plain CPU copy of a sharded model on global rank 0, None on the others (for the export). Every rank
    must call it (the gathered state_dict is empty on all but rank 0)."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not state:
        return None
    copy = MMBertForMaskedLM(model.cfg, attn_backend="sdpa")     # for its weights; the backend is not exported
    copy.load_state_dict(state)
    return copy


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """A full optimizer state_dict (an unsharded run's `optimizer.state_dict()`, or a consolidated checkpoint's)
    into the optimizer of the sharded `model`, each rank keeping its shard. As `Optimizer.load_state_dict` does,
    parameters are matched by their place in the parameter groups, never by index: Lightning numbers a
    consolidated FSDP state in the model's parameter order, an unsharded one follows the groups."""
    names = {id(p): n for n, p in model.named_parameters()}
    saved, current = state["param_groups"], optimizer.param_groups
    if [len(g["params"]) for g in saved] != [len(g["params"]) for g in current]:
        raise ValueError(f"the optimizer state has parameter groups of {[len(g['params']) for g in saved]} tensors; "
                         f"this model's optimizer has {[len(g['params']) for g in current]}")
    by_name: dict = {"state": {}, "param_groups": []}
    for old, new in zip(saved, current):
        for i, p in zip(old["params"], new["params"]):
            if i in state["state"]:
                by_name["state"][names[id(p)]] = state["state"][i]
        by_name["param_groups"].append({**old, "params": [names[id(p)] for p in new["params"]]})
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))
