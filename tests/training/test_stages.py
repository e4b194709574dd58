"""Stages are data: each +stage=NAME composes mmBERT's values; stages chain through init_from."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from mmbert_pl.training.config_schema import register, validate
from tests.in_process import command

register()

# stage -> (budget, row length, θ, mask ratio, τ, language set, warmup share, decay share)
BASE = {
    "pretrain": (2.3e12, 1024, 1e4, 0.30, 0.7, "pretrain", 3e9 / 2.3e12, 0.0),
    "ext": (6e11, 8192, 1.6e5, 0.15, 0.5, "ext", 0.0, 0.0),
    "decay_eng": (1e11, 8192, 1.6e5, 0.05, 0.3, "decay_eng", 0.0, 1.0),
    "decay_cont": (1e11, 8192, 1.6e5, 0.05, 0.3, "decay_cont", 0.0, 1.0),
    "decay_all": (1e11, 8192, 1.6e5, 0.05, 0.3, "decay_all", 0.0, 1.0),
}


def composed(*overrides: str):
    with initialize_config_module(version_base="1.3", config_module="conf"):
        cfg = compose("config", overrides=list(overrides))
    validate(cfg)
    return cfg


@pytest.mark.parametrize("stage", sorted(BASE))
def test_stage_values_for_base(stage: str) -> None:
    cfg = composed(f"+stage={stage}", "model=base")
    budget, rows, theta, mask, tau, languages, warmup, decay = BASE[stage]
    assert cfg.trainer.max_tokens == budget and cfg.data.row_length == rows
    assert cfg.model.global_rope_theta == cfg.model.local_rope_theta == theta
    assert cfg.mask_ratio == mask and cfg.data.temperature == tau and cfg.data.languages == languages
    assert cfg.callbacks.lr.warmup == pytest.approx(warmup) and cfg.callbacks.lr.decay == decay
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.callbacks.lr.alpha_f, cfg.callbacks.lr.shape) == (8e-4, 8e-5, 0.02, "1-sqrt")
    assert cfg.data.global_batch_rows == 4608 and cfg.experiment == f"base-{stage}"


def test_small_brings_its_differences() -> None:
    pre = composed("+stage=pretrain", "model=small")
    assert pre.callbacks.lr.warmup == pytest.approx(4e9 / 2.3e12) and pre.optimizer.lr == 8e-4
    ext = composed("+stage=ext", "model=small")
    assert (ext.optimizer.lr, ext.optimizer.weight_decay) == (4e-4, 4e-5)
    decay = composed("+stage=decay_all", "model=small")
    assert (decay.callbacks.lr.shape, decay.callbacks.lr.alpha_f, decay.optimizer.lr) == ("linear", 0.04, 4e-4)
    assert decay.optimizer.lr * decay.callbacks.lr.alpha_f == pytest.approx(8e-4 * 0.02)   # the same final LR
    assert composed("+stage=decay_eng").data.boost == {"eng": 1.43}
    assert composed("+stage=pretrain", "mask_ratio=0.25").mask_ratio == 0.25                 # the released base config


def test_unknown_stage_lists_the_valid_ones() -> None:
    result = command("mmbert_pl.run", ["+stage=decay_typo"])
    assert result.returncode != 0
    assert "decay_typo" in result.stderr and all(s in result.stderr for s in BASE)


@pytest.mark.slow
def test_stage_chain_on_the_sample(tmp_path: Path, sample_cache: Path) -> None:
    """pretrain -> ext -> decay_all, tiny and shrunk by budget_scale, each started from the previous one."""
    env = {**os.environ, "MMBERT_RUNS": str(tmp_path / "runs"), "MMBERT_CACHE": str(sample_cache)}
    common = ["model=tiny", "budget_scale=1e-8", "trainer.progress_bar=false", "trainer.limit_val_batches=0",
              "data.micro_batch=1", "callbacks.retrieval.every=null"]
    previous = None
    stages = [("pretrain", 1024, 10000.0, "data.global_batch_rows=4"), ("ext", 8192, 160000.0, "data.global_batch_rows=1"),
              ("decay_all", 8192, 160000.0, "data.global_batch_rows=1")]
    for stage, rows, theta, batch in stages:
        extra = [f"init_from={previous}"] if previous else []
        result = command("mmbert_pl.run", [f"+stage={stage}", *common, batch, *extra], env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"x {rows}\n" in result.stdout                         # "budget ... = N steps of R rows x <row length>"
        run_dir = tmp_path / "runs" / f"tiny-{stage}"
        hf = json.loads((run_dir / "hf" / "config.json").read_text())
        assert hf["global_rope_theta"] == hf["local_rope_theta"] == theta
        if previous:
            assert "initialised weights and optimizer state (Adam moments after" in result.stdout
        previous = run_dir / "checkpoints" / "last.ckpt"
    assert "fao_Latn" in result.stdout                                  # decay_all brings the low-resource languages


@pytest.mark.slow
def test_a_chained_stage_takes_its_first_step_from_the_previous_stages_final_moments(tmp_path: Path, sample_cache: Path) -> None:
    """Three real runs of the CLI (in this process): A (3 steps), then B from A's last.ckpt (the default: weights and optimizer state)
    and W from it with init_weights_only=true, each 1 step on the same rows. Both compute the same gradient g at their
    first step (same weights, rows and masks). StableAdamW folds bias correction into the betas (b_t = (β^t - β) /
    (β^t - 1), so b_1 = 0 and m_W = g); B is at t = 4, so m_B = b1_4·m_A + (1 - b1_4)·m_W, and likewise for v.
    With zeroed moments m_B would equal m_W. B's step counts go on from A's; B's LR is its own stage's."""
    import torch

    env = {**os.environ, "MMBERT_RUNS": str(tmp_path / "runs"), "MMBERT_CACHE": str(sample_cache)}
    quiet = ["trainer.progress_bar=false", "callbacks.retrieval.every=null", "trainer.limit_val_batches=0"]

    def run(*overrides: str) -> subprocess.CompletedProcess:
        result = command("mmbert_pl.run", [*quiet, *overrides], env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    def optimizer_state(experiment: str) -> tuple[dict, list[dict]]:
        ckpt = torch.load(tmp_path / "runs" / experiment / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        state = ckpt["optimizer_states"][0]
        return state["state"], state["param_groups"]

    run("experiment=a", "trainer.max_steps=3")
    a_ckpt = tmp_path / "runs" / "a" / "checkpoints" / "last.ckpt"
    b = run("experiment=b", f"init_from={a_ckpt}", "trainer.max_steps=1", "optimizer.lr=4e-4")
    assert f"initialised weights and optimizer state (Adam moments after 3 steps) from {a_ckpt}" in b.stdout
    w = run("experiment=w", f"init_from={a_ckpt}", "init_weights_only=true", "trainer.max_steps=1", "optimizer.lr=4e-4")
    assert "fresh optimizer moments" in w.stdout
    (a, _), (b_state, b_groups), (w_state, _) = optimizer_state("a"), optimizer_state("b"), optimizer_state("w")
    b1, b2 = ((beta**4 - beta) / (beta**4 - 1) for beta in (0.9, 0.95))
    assert {int(s["step"]) for s in b_state.values()} == {4} and {int(s["step"]) for s in w_state.values()} == {1}
    assert all(g["max_lr"] == 4e-4 for g in b_groups)
    for i in a:
        m, v = (b1 * a[i]["exp_avg"] + (1 - b1) * w_state[i]["exp_avg"], b2 * a[i]["exp_avg_sq"] + (1 - b2) * w_state[i]["exp_avg_sq"])
        assert torch.allclose(b_state[i]["exp_avg"], m, rtol=1e-4, atol=1e-10)
        assert torch.allclose(b_state[i]["exp_avg_sq"], v, rtol=1e-4, atol=1e-14)
    assert sum(not torch.allclose(b_state[i]["exp_avg"], w_state[i]["exp_avg"], rtol=0.05) for i in a) > len(a) // 2


@pytest.mark.parametrize("overrides,message", [
    (["model=small"], "model hidden_size is 64 there, 384 here"),
    (["model.name=base"], "model hidden_size is 64 there, 768 here; model intermediate_size is 96 there, 1152 here"),
])
def test_init_from_another_model_shape_names_the_field(overrides: list[str], message: str, trained_run: Path, tmp_path: Path) -> None:
    env = {**os.environ, "MMBERT_RUNS": str(tmp_path / "runs"), "MMBERT_CACHE": str(trained_run.parents[1] / "cache")}
    result = command("mmbert_pl.run", [f"init_from={trained_run / 'checkpoints' / 'last.ckpt'}", "trainer.max_steps=1", *overrides], env)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "runs").exists()                             # refused before the run folder is made


def test_init_from_a_hugging_face_folder_takes_its_weights_only(trained_run: Path, tmp_path: Path, sample_cache: Path) -> None:
    """An HF folder holds no optimizer state: asked for it, the run says so; with init_weights_only=true it trains
    from the folder's weights (the README's "Start from a released model")."""
    env = {**os.environ, "MMBERT_RUNS": str(tmp_path / "runs"), "MMBERT_CACHE": str(sample_cache)}
    args = [f"init_from={trained_run / 'hf'}", "trainer.max_steps=1", "callbacks.retrieval.every=null", "trainer.progress_bar=false"]
    result = command("mmbert_pl.run", args, env)
    assert result.returncode == 2 and "holds no optimizer state" in result.stderr and "init_weights_only=true" in result.stderr
    result = command("mmbert_pl.run", [*args, "init_weights_only=true"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"initialised weights from {trained_run / 'hf'}" in result.stdout, result.stdout[-2000:]


def test_slurm_launcher_renders_one_task_per_gpu_the_warning_signal_and_requeue(tmp_path) -> None:
    """`hydra/launcher=slurm` as submitit renders it: srun tasks = GPUs, a signal 90 s before the limit, --requeue."""
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import _make_sbatch_string

    with initialize_config_module(version_base="1.3", config_module="conf"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "trainer=gpu_ddp"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["max_num_timeout"] == 0
    script = _make_sbatch_string(command="python -m mmbert_pl.run", folder=tmp_path, nodes=launcher["nodes"],
                                 ntasks_per_node=launcher["tasks_per_node"], gpus_per_node=launcher["gpus_per_node"],
                                 signal_delay_s=launcher["signal_delay_s"], additional_parameters=launcher["additional_parameters"])
    for flag in ("--ntasks-per-node=8", "--gpus-per-node=8", "--signal=USR2@90", "--requeue"):
        assert f"#SBATCH {flag}\n" in script, flag
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.requeue


@pytest.mark.parametrize("overrides,named", [
    (["+stage=ext", "trainer.max_steps=20"], ["trainer.max_steps=20", "trainer.max_tokens=6e+11", "both set the budget"]),
    (["+stage=pretrain", "trainer.accumulate_grad_batches=4"], ["data.global_batch_rows=4608", "trainer.accumulate_grad_batches=4"]),
    (["+stage=sample_cascade", "mask_ratio=0.2"], ["mask_ratio=0.2", "callbacks.mask.points", "both set the mask ratio"]),
    (["callbacks.mask.points=[[0,0.3],[1,0.1]]"], ["mask_ratio=0.3", "both set the mask ratio"]),
    (["trainer.max_steps=null"], ["no budget"]),
])
def test_two_keys_for_one_setting_are_refused_at_compose_time(overrides: list[str], named: list[str]) -> None:
    """No key is dropped without a word: where two keys set the same thing, setting both is an error naming both."""
    with pytest.raises(ValueError) as refused:
        composed(*overrides)
    assert all(n in str(refused.value) for n in named), str(refused.value)


def test_one_key_of_each_pair_composes() -> None:
    assert composed("+stage=ext", "trainer.max_tokens=null", "trainer.max_steps=20").trainer.max_steps == 20
    assert composed("+stage=pretrain", "data.global_batch_rows=null", "trainer.accumulate_grad_batches=4").trainer.accumulate_grad_batches == 4
    assert composed("+stage=sample_cascade").callbacks.mask.points[1] == [0.3333333, 0.15]


def test_sharded_checkpoints_are_for_fsdp_only() -> None:
    assert composed("trainer=cpu_fsdp", "trainer.checkpoint_format=sharded").trainer.checkpoint_format == "sharded"
    assert composed("trainer=gpu_fsdp").trainer.checkpoint_format == "consolidated"
    for overrides, named in ((["trainer=cpu_ddp", "trainer.checkpoint_format=sharded"], "needs trainer.strategy=fsdp"),
                             (["trainer=cpu_fsdp", "trainer.checkpoint_format=dcp"], "choose consolidated or sharded")):
        with pytest.raises(ValueError, match=named):
            composed(*overrides)
