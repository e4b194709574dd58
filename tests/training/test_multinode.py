"""Two nodes x one process on 127.0.0.1, launched as a cluster launcher launches them (torchrun's environment:
MASTER_ADDR/PORT, WORLD_SIZE, RANK, GROUP_RANK, LOCAL_RANK, TORCHELASTIC_RUN_ID; `trainer.num_nodes=2`), each
with its own node-local data cache and /dev/shm (a private tmpfs, as on another host; streaming keeps its
per-node state there), sharing the run folder as nodes share a cluster filesystem. The two ranks train
between them exactly the rows the 1-process run trains, and end at the weights of the 2-process run on one node
(`trainer=cpu_ddp`): masks are drawn per (step, rank, micro-batch), so the same rows on one process get other
masks and only the same layout of ranks can end at the same weights."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import LIMIT, last_checkpoint, run_env, wait_exit
from tests.sample_logs import rows_by_step
from tests.training.reference_runs import DDP_ARGS
from tests.weights import max_relative_difference

pytestmark = pytest.mark.slow

NODE = ["trainer.devices=1", "trainer.num_nodes=2", "trainer.strategy=ddp"]


def private_shm() -> list[str] | None:
    """The command prefix that runs a process with its own /dev/shm, or None where this machine allows none."""
    for prefix in (["unshare", "-m"], ["unshare", "--user", "--map-root-user", "-m"]):
        if shutil.which("unshare") and subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs tmpfs /dev/shm"],
                                                      capture_output=True).returncode == 0:
            return prefix
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_one_machine_train_the_rows_of_one_process(ddp_reference: dict[str, Path], tmp_path: Path,
                                                               prepared_sample: Path) -> None:
    prefix = private_shm()
    if prefix is None:
        pytest.skip("needs `unshare -m` (a private /dev/shm per simulated node); this machine allows no mount namespace")
    port, procs = free_port(), []
    for node in (0, 1):            # each node its own copy of the cache, as on its own local disk
        cache = shutil.copytree(prepared_sample, tmp_path / f"cache{node}")
        env = {**run_env(tmp_path / "nodes", cache), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "WORLD_SIZE": "2", "RANK": str(node), "GROUP_RANK": str(node), "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
               "TORCHELASTIC_RUN_ID": "two-nodes"}
        command = " ".join([sys.executable, "-m", "mmbert_pl.run", *DDP_ARGS, *NODE])
        procs.append(subprocess.Popen([*prefix, "sh", "-c", f"mount -t tmpfs tmpfs /dev/shm && exec {command}"], env=env,
                                      stdout=open(tmp_path / f"node{node}.txt", "w"), stderr=subprocess.STDOUT))
    for node, proc in enumerate(procs):
        code = wait_exit(proc, f"node {node}", LIMIT)
        assert code == 0, (tmp_path / f"node{node}.txt").read_text()[-3000:]

    single, nodes = ddp_reference["one"], tmp_path / "nodes" / "runs" / "sample"
    r0, r1 = (rows_by_step(nodes / "samples" / f"rank{k}.tsv") for k in (0, 1))
    want = rows_by_step(single / "samples" / "rank0.tsv")
    assert sorted(r0) == sorted(r1) == sorted(want) == list(range(12))
    for step in want:
        assert not r0[step] & r1[step] and r0[step] | r1[step] == want[step]
    ddp = ddp_reference["two"]
    for rank in (0, 1):
        assert (nodes / "samples" / f"rank{rank}.tsv").read_text() == (ddp / "samples" / f"rank{rank}.tsv").read_text()
    a, b = (last_checkpoint(d)["state_dict"] for d in (ddp, nodes))
    assert a["tokens_seen"] == b["tokens_seen"] == 12 * 16 * 128
    assert max_relative_difference(a, b) < 1e-4        # one optimizer step more or less is about 1e-2
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (tmp_path / "node1.txt").read_text()
