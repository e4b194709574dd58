"""StableAdamW on FSDP2 shards takes the unsharded step: 2 gloo processes, parameters split unevenly on dim 0,
gradients scaled so the update clip (RMS of g²/v over the whole tensor) is active. With the clip taken per
shard the ranks' halves would be scaled by different divisors, and the test fails."""
from __future__ import annotations

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mmbert_pl.training.optim import StableAdamW, parameter_groups

STEPS = 6


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 7), nn.LayerNorm(7), nn.Linear(7, 5))


def gradients(step: int) -> list[torch.Tensor]:
    """Per parameter: large on rows 0-1 only, and growing, so the clip is active and uneven across shards."""
    g = torch.Generator().manual_seed(step)
    out = []
    for p in model().parameters():
        x = torch.randn(p.shape, generator=g)
        x[:2] *= 10.0 ** step
        out.append(x)
    return out


def unsharded() -> list[torch.Tensor]:
    m = model()
    opt = StableAdamW(parameter_groups(m, 0.1), lr=1e-2, weight_decay=0.1)
    for step in range(STEPS):
        for p, g in zip(m.parameters(), gradients(step)):
            p.grad = g
        opt.step()
    return [p.detach().clone() for p in m.parameters()]


def sharded(rank: int, port: int, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import distribute_tensor

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    m = model()
    fully_shard(m, mesh=init_device_mesh("cpu", (2,)))
    opt = StableAdamW(parameter_groups(m, 0.1), lr=1e-2, weight_decay=0.1)
    for step in range(STEPS):
        for p, g in zip(m.parameters(), gradients(step)):
            p.grad = distribute_tensor(g, p.device_mesh, p.placements)
        opt.step()
    full = [p.full_tensor().detach() for p in m.parameters()]
    if rank == 0:
        torch.save(full, out)
    dist.barrier()                 # both ranks leave together: a rank tearing gloo down alone has aborted its peer
    dist.destroy_process_group()


def test_sharded_step_equals_the_unsharded_step(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(sharded, args=(port, str(tmp_path / "weights.pt")), nprocs=2)
    got = torch.load(tmp_path / "weights.pt")
    for want, have in zip(unsharded(), got):
        assert torch.allclose(want, have, rtol=1e-5, atol=1e-6), (want - have).abs().max()
