"""A sharded checkpoint folder (`trainer.checkpoint_format=sharded`) as the one file a consolidated run writes:
the same weights, optimizer state (numbered by parameter, as Lightning numbers it) and loop state, readable by
`init_from=`, merge, evaluate and a resume under any strategy. It needs no GPU and no process group.

    python -m mmbert_pl.consolidate runs/NAME/checkpoints/step0000020.ckpt [--out FILE]

Without --out the folder is replaced by the file, keeping its name and modification time (a rerun resumes from
the same checkpoint as before). The run's final last.ckpt is written as one file anyway.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from mmbert_pl.files.checkpointing import SHARDED_META, AtomicCheckpointIO, checkpoint_problem, is_sharded_checkpoint, move_into_place
from mmbert_pl.model import EncoderConfig, MMBertForMaskedLM


def parameter_order(hyper_parameters: dict) -> list[str]:
    """The LightningModule's parameter names in `parameters()` order (a tied weight once): the numbering of a
    consolidated checkpoint's optimizer state."""
    with torch.device("meta"):
        model = MMBertForMaskedLM(EncoderConfig(**hyper_parameters["model"]), attn_backend="sdpa")
    return [f"model.{name}" for name, _ in model.named_parameters()]


def numbered(optimizer_state: dict, order: list[str]) -> dict:
    """An optimizer state keyed by parameter name (a sharded save's) keyed by parameter number instead."""
    number = {name: i for i, name in enumerate(order)}

    def of(name: str) -> int:
        plain = name.replace("._orig_mod", "").replace("_orig_mod.", "")       # a compiled module's names
        if plain not in number:
            raise ValueError(f"the optimizer state names parameter {name!r}, which this model does not have")
        return number[plain]

    return {"state": {of(name): value for name, value in optimizer_state["state"].items()},
            "param_groups": [{**group, "params": [of(n) for n in group["params"]]} for group in optimizer_state["param_groups"]]}


def consolidate(folder: Path) -> dict:
    """The checkpoint a consolidated save of the same moment writes."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.format_utils import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    if not is_sharded_checkpoint(folder):
        raise ValueError(f"{folder} is not a sharded checkpoint folder (one with {SHARDED_META} and .metadata)")
    if problem := checkpoint_problem(folder):
        raise ValueError(f"{folder} cannot be consolidated: {problem}; use an older checkpoint of the run")
    tensors: dict = {}
    _load_state_dict(tensors, storage_reader=FileSystemReader(folder), planner=_EmptyStateDictLoadPlanner(), no_dist=True)
    checkpoint = torch.load(folder / SHARDED_META, map_location="cpu", weights_only=False)
    order = parameter_order(checkpoint["hyper_parameters"])
    checkpoint["state_dict"] = tensors.pop("state_dict")
    count = sum(k.startswith("optimizer_") for k in tensors)
    checkpoint["optimizer_states"] = [numbered(tensors.pop(f"optimizer_{i}"), order) for i in range(count)]
    return checkpoint


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmbert_pl.consolidate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="a sharded checkpoint folder (runs/NAME/checkpoints/*.ckpt)")
    ap.add_argument("--out", type=Path, default=None, help="write the file here instead of replacing the folder")
    args = ap.parse_args(argv)
    try:
        checkpoint = consolidate(args.checkpoint)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or args.checkpoint
    tmp = out.with_name(out.name + ".tmp")
    AtomicCheckpointIO().save_checkpoint(checkpoint, tmp)
    mtime = (args.checkpoint / SHARDED_META).stat().st_mtime_ns
    os.utime(tmp, ns=(mtime, mtime))
    move_into_place(tmp, out)
    print(f"wrote {out}: step {checkpoint['global_step']}, {len(checkpoint['state_dict'])} tensors, "
          f"{len(checkpoint['optimizer_states'])} optimizer state(s)")
    return 0


if __name__ == "__main__":
    from data_prep.quick_exit import freeze_at_exit

    freeze_at_exit()
    sys.exit(main())
