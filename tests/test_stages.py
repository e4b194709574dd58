"""Stages are data: each +stage=NAME composes mmBERT's values; stages chain through init_from."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from mmbert_pl.config_schema import register, validate

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
    result = subprocess.run([sys.executable, "-m", "mmbert_pl.run", "+stage=decay_typo"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "decay_typo" in result.stderr and all(s in result.stderr for s in BASE)


@pytest.mark.slow
def test_stage_chain_on_the_sample(tmp_path: Path) -> None:
    """pretrain -> ext -> decay_all, tiny and shrunk by budget_scale, each started from the previous one."""
    env = {**os.environ, "MMBERT_RUNS": str(tmp_path / "runs"), "MMBERT_CACHE": str(tmp_path / "cache")}
    common = ["model=tiny", "budget_scale=1e-8", "trainer.progress_bar=false", "trainer.limit_val_batches=1",
              "trainer.val_check_interval=1000", "data.micro_batch=1"]
    previous = None
    stages = [("pretrain", 1024, 10000.0, "data.global_batch_rows=4"), ("ext", 8192, 160000.0, "data.global_batch_rows=1"),
              ("decay_all", 8192, 160000.0, "data.global_batch_rows=1")]
    for stage, rows, theta, batch in stages:
        extra = [f"init_from={previous}", "init_optimizer=true"] if previous else []
        result = subprocess.run([sys.executable, "-m", "mmbert_pl.run", f"+stage={stage}", *common, batch, *extra],
                                capture_output=True, text=True, env=env, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"x {rows}\n" in result.stdout                         # "budget ... = N steps of R rows x <row length>"
        run_dir = tmp_path / "runs" / f"tiny-{stage}"
        hf = json.loads((run_dir / "hf" / "config.json").read_text())
        assert hf["global_rope_theta"] == hf["local_rope_theta"] == theta
        if previous:
            assert f"initialised weights and optimizer moments from {previous}" in result.stdout
        previous = run_dir / "checkpoints" / "last.ckpt"
    assert "fao_Latn" in result.stdout                                  # decay_all brings the low-resource languages


def test_init_optimizer_keeps_moments_under_the_new_lr(tmp_path: Path, shard_dir: Path, tokenizer_model: Path) -> None:
    import lightning as L

    from data_prep.tokenizer import ordinary_ids
    from mmbert_pl.data.datamodule import MixtureDataModule
    from mmbert_pl.init_from import load_optimizer_moments
    from mmbert_pl.model import named_config
    from mmbert_pl.module import MLMModule

    def fit(lr: float, steps: int, state=None) -> tuple[L.Trainer, MLMModule]:
        module = MLMModule(named_config("tiny"), ordinary_ids(tokenizer_model), lr=lr, attn_backend="sdpa")
        module.initial_optimizer_state = state
        trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, limit_val_batches=0)
        trainer.fit(module, datamodule=MixtureDataModule(str(shard_dir), "pretrain", 0.7, steps * 4 * 1024, 4))
        return trainer, module

    first, _ = fit(8e-4, 3)
    first.save_checkpoint(tmp_path / "a.ckpt")
    state = load_optimizer_moments(tmp_path / "a.ckpt")
    second, _ = fit(4e-4, 1, state)
    opt = second.optimizers[0]
    assert all(g["lr"] == 4e-4 and g["max_lr"] == 4e-4 for g in opt.param_groups)
    assert opt.state[opt.param_groups[0]["params"][0]]["step"] == 4           # 3 steps carried over + 1
    with pytest.raises(ValueError, match="no optimizer state"):
        load_optimizer_moments(tmp_path)


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
