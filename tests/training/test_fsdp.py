"""FSDP2 (`trainer=cpu_fsdp`: 2 processes, gloo) against DDP (`trainer=cpu_ddp`) on the same rows: the same weights
and optimizer state within fp32 reduction noise, the same validation and retrieval numbers, a consolidated
`last.ckpt` in DDP's format and a full Hugging Face export; a kill -9 plus the same command ends where the
uninterrupted FSDP run ends, with consolidated or sharded checkpoints (`trainer.checkpoint_format`); a chained stage (`init_from=` with optimizer state) starts the same under both."""
from __future__ import annotations

import csv
import os
import signal
import shutil
from pathlib import Path

import pytest
import torch

from tests import in_process
from tests.processes import cli, finished, last_checkpoint, launch, remove_streaming_memory_of, run_env, wait_exit, wait_until
from tests.sample_logs import logged
from tests.training.reference_runs import SHORT_ROWS
from tests.weights import max_relative_difference, relative

pytestmark = pytest.mark.slow

ARGS = [SHORT_ROWS, "data.global_batch_rows=16", "trainer.max_steps=16", "callbacks.sample_log=true", "callbacks.checkpoint_every_n_steps=4",
        "callbacks.retrieval.every=0.5", "trainer.val_check_interval=8", "trainer.limit_val_batches=2",
        "trainer.progress_bar=false"]


WEIGHTS_BOUND, MOMENTS_BOUND = 1e-4, 1e-3   # relative; one optimizer step more or less moves a tensor by 1e-2 and more


def moments_difference(ma: list, mb: list) -> float:
    """Largest relative difference of exp_avg and exp_avg_sq, tensor by tensor in group order."""
    return max(relative(x, y) for (_, *xs), (_, *ys) in zip(ma, mb) for x, y in zip(xs, ys))


def moments_by_place(optimizer_state: dict) -> list[tuple[float, torch.Tensor, torch.Tensor]]:
    """(weight decay, exp_avg, exp_avg_sq) of every tensor in parameter-group order: how a load matches them."""
    return [(g["weight_decay"], optimizer_state["state"][i]["exp_avg"], optimizer_state["state"][i]["exp_avg_sq"])
            for g in optimizer_state["param_groups"] for i in g["params"]]


def param_groups(optimizer_state: dict) -> list[dict]:
    """The hyper-parameter groups, tuples as lists: torch.distributed.checkpoint stores `betas` as a list."""
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in optimizer_state["param_groups"]]


def metric_rows(run_dir: Path, prefix: str) -> dict[tuple[int, str], float]:
    rows = csv.DictReader(open(run_dir / "logs" / "metrics.csv"))
    return {(int(r["step"]), k): float(v) for r in rows for k, v in r.items() if k.startswith(prefix) and v}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, prepared_sample: Path) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("fsdp")
    cache = shutil.copytree(prepared_sample, tmp / "cache")
    return {name: finished([*ARGS, f"trainer=cpu_{name}"], run_env(tmp / name, cache), f"the {name} run")
            for name in ("ddp", "fsdp")}


def test_fsdp_trains_what_ddp_trains(runs: dict[str, Path]) -> None:
    ddp, fsdp = runs["ddp"], runs["fsdp"]
    for rank in (0, 1):
        assert (fsdp / "samples" / f"rank{rank}.tsv").read_text() == (ddp / "samples" / f"rank{rank}.tsv").read_text()
    a, b = last_checkpoint(ddp), last_checkpoint(fsdp)
    assert a["global_step"] == b["global_step"] == 16 and a["loops"] == b["loops"]
    assert all(not hasattr(v, "device_mesh") for v in b["state_dict"].values())     # consolidated, plain tensors
    assert max_relative_difference(a["state_dict"], b["state_dict"]) < WEIGHTS_BOUND
    # weight-decay groups of the original parameters, and StableAdamW's clip over whole tensors: the moments agree
    ma, mb = moments_by_place(a["optimizer_states"][0]), moments_by_place(b["optimizer_states"][0])
    assert [m[0] for m in ma] == [m[0] for m in mb] and {m[0] for m in mb} == {8e-5, 0.0}
    assert moments_difference(ma, mb) < MOMENTS_BOUND
    for prefix in ("val/", "retrieval/"):
        va, vb = metric_rows(ddp, prefix), metric_rows(fsdp, prefix)
        assert va and va.keys() == vb.keys(), prefix
        assert max(abs(va[k] - vb[k]) for k in va) < 1e-3, prefix
    from transformers import AutoModelForMaskedLM

    hf = AutoModelForMaskedLM.from_pretrained(fsdp / "hf").state_dict()
    assert float((hf["model.embeddings.tok_embeddings.weight"] - b["state_dict"]["model.model.embeddings.tok_embeddings.weight"]).abs().max()) == 0


def test_fsdp_killed_and_rerun_ends_where_the_uninterrupted_run_ends(runs: dict[str, Path], tmp_path: Path, sample_cache: Path) -> None:
    """kill -9 of a consolidated FSDP run; its rerun writes sharded checkpoints (resuming from the consolidated file)
    and is killed too; the third launch resumes from a sharded folder. It ends bitwise where the uninterrupted run
    ends, its final last.ckpt one file; `python -m mmbert_pl.consolidate` turns a sharded step checkpoint into the
    file the consolidated run wrote at that step."""
    from mmbert_pl.files.checkpointing import checkpoint_problem, newest_checkpoint
    from mmbert_pl.files.model_files import load_checkpoint

    env, run_dir = run_env(tmp_path, sample_cache), tmp_path / "runs" / "sample"
    ckpts, sharded = run_dir / "checkpoints", [*ARGS, "trainer=cpu_fsdp", "trainer.checkpoint_format=sharded"]

    def killed_after(step: int, args: list[str], name: str) -> str:
        log = tmp_path / f"{name}.txt"
        proc = launch(args, env, log)
        wait_until(f"step {step} in the sample log", lambda: any(int(r[0]) >= step for r in logged(run_dir / "samples")), proc, log)
        os.killpg(proc.pid, signal.SIGKILL)
        wait_exit(proc, f"the killed {name} run")
        remove_streaming_memory_of(sample_cache)       # a SIGKILLed run leaves it in /dev/shm
        return log.read_text()

    killed_after(9, [*ARGS, "trainer=cpu_fsdp"], "consolidated")
    assert "resuming from" in killed_after(13, sharded, "sharded")
    assert (ckpts / "step0000008.ckpt").is_file() and (ckpts / "step0000012.ckpt").is_dir()
    resume_from = newest_checkpoint(ckpts)
    assert resume_from is not None and resume_from.is_dir()                  # the third launch reads a sharded folder
    resumed = cli(sharded, env, "the resumed FSDP run")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert f"resuming from {resume_from}" in resumed.stdout
    want, got = last_checkpoint(runs["fsdp"]), last_checkpoint(run_dir)      # last.ckpt: one file, read as such
    assert max_relative_difference(want["state_dict"], got["state_dict"]) == 0
    assert param_groups(got["optimizer_states"][0]) == param_groups(want["optimizer_states"][0])
    assert moments_by_place(got["optimizer_states"][0]) and all(
        torch.equal(x, y) for a, b in zip(moments_by_place(got["optimizer_states"][0]), moments_by_place(want["optimizer_states"][0]))
        for x, y in zip(a[1:], b[1:]))
    for rank in (0, 1):
        assert (run_dir / "samples" / f"rank{rank}.tsv").read_text() == (runs["fsdp"] / "samples" / f"rank{rank}.tsv").read_text()

    assert (ckpts / "step0000016.ckpt").is_dir() and not list(ckpts.glob("*.tmp"))
    with pytest.raises(ValueError, match="python -m mmbert_pl.consolidate"):
        load_checkpoint(ckpts / "step0000016.ckpt")
    out = in_process.cli(["--out", str(tmp_path / "step16.ckpt"), str(ckpts / "step0000016.ckpt")], env, "consolidate",
                         module="mmbert_pl.consolidate")
    assert out.returncode == 0, out.stderr[-3000:]
    consolidated, reference = (torch.load(p, map_location="cpu", weights_only=False)
                               for p in (tmp_path / "step16.ckpt", runs["fsdp"] / "checkpoints" / "step0000016.ckpt"))
    assert consolidated.keys() == reference.keys() and consolidated["global_step"] == reference["global_step"] == 16
    assert max_relative_difference(consolidated["state_dict"], reference["state_dict"]) == 0
    ours, theirs = consolidated["optimizer_states"][0], reference["optimizer_states"][0]
    assert param_groups(ours) == param_groups(theirs) and ours["state"].keys() == theirs["state"].keys()
    assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(theirs["state"][i][k])) for i, s in ours["state"].items() for k, v in s.items())
    # in place: the folder becomes the file, with its modification time (the resume order stays)
    before = (ckpts / "step0000012.ckpt").stat().st_mtime
    assert in_process.cli([str(ckpts / "step0000012.ckpt")], env, "consolidate in place", module="mmbert_pl.consolidate").returncode == 0
    assert (ckpts / "step0000012.ckpt").is_file() and checkpoint_problem(ckpts / "step0000012.ckpt", 12) is None
    assert abs((ckpts / "step0000012.ckpt").stat().st_mtime - before) < 2
    # a sharded save cut short (no meta.pt) is passed over, named
    shutil.copytree(ckpts / "step0000016.ckpt", ckpts / "step0000020.ckpt")
    (ckpts / "step0000020.ckpt" / "meta.pt").unlink()
    assert "did not finish" in checkpoint_problem(ckpts / "step0000020.ckpt")
    assert newest_checkpoint(ckpts) != ckpts / "step0000020.ckpt"


def test_a_chained_stage_starts_from_the_optimizer_state_under_fsdp(runs: dict[str, Path], tmp_path: Path, sample_cache: Path) -> None:
    """`init_from=` a DDP checkpoint, optimizer state included: the next stage under FSDP trains as under DDP."""
    args = [SHORT_ROWS, "data.global_batch_rows=16", "trainer.max_steps=4", "callbacks.retrieval.every=null", "trainer.limit_val_batches=0",
            "trainer.progress_bar=false", f"init_from={runs['ddp'] / 'checkpoints' / 'last.ckpt'}"]
    got = {name: last_checkpoint(finished([*args, f"trainer=cpu_{name}"], run_env(tmp_path / name, sample_cache), f"the chained {name} run"))
           for name in ("ddp", "fsdp")}
    assert max_relative_difference(got["ddp"]["state_dict"], got["fsdp"]["state_dict"]) < WEIGHTS_BOUND
    ma, mb = (moments_by_place(got[k]["optimizer_states"][0]) for k in ("ddp", "fsdp"))
    assert moments_difference(ma, mb) < MOMENTS_BOUND
    assert all(s["step"] == 20 for s in got["fsdp"]["optimizer_states"][0]["state"].values())
