"""`python -m mmbert_pl.run`: compose -> validate -> prepare data -> fit (or resume) -> export.

The run directory is a function of the config (`runs_dir/experiment`; in a sweep, the sweep folder and
the job's overrides), never of the time, so the same command resumes from the newest readable
checkpoint, and a finished run reports where its results are. Exit codes: 0 finished, 2 bad input,
3 stopped by a signal with a checkpoint saved (rerun to resume).
"""
from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .bad_input import exit_on_bad_input
from .config_schema import register, validate

register()

# Warnings Lightning gives on every run that need no action here; silenced so that a warning a run does
# print is worth reading.
HARMLESS_LIGHTNING_WARNINGS = (
    # at every save under manual optimization, with sample code: the state after the optimizer step is what
    # an exact resume needs (the step counter, the data position and the weights agree)
    r"Using ModelCheckpoint with manual optimization",
    # streaming's __len__ is per rank and it splits the samples among the workers itself
    r"Your `IterableDataset` has `__len__` defined",
    # MLMModule keeps batches on the host on purpose (step_inputs sends what the device needs)
    r"You have overridden `transfer_batch_to_device` in `LightningModule` but have passed in a `LightningDataModule`",
    # Lightning's own pytree code under torch >= 2.14, nothing a user can change
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


def make_logger(kind: str, run_dir: Path):
    import importlib.util

    from lightning.pytorch import loggers

    needs = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}.get(kind, ())
    if needs and not any(importlib.util.find_spec(m) for m in needs):
        raise ValueError(f"trainer.logger={kind} needs the {needs[0]} package: pip install -e '.[loggers]' (or use trainer.logger=csv)")
    if kind == "csv":
        return loggers.CSVLogger(run_dir, name="logs", version="")
    if kind == "tensorboard":
        return loggers.TensorBoardLogger(run_dir, name="tb", version="")
    return loggers.WandbLogger(save_dir=str(run_dir), offline=True, project="mmbert_pl")


def retrieval_callback(cfg: DictConfig, manifest: dict, tokenizer: Path, budget: float):
    """Retrieval on the lines the shards held out: the bundled sample's text, or `callbacks.retrieval.corpus`."""
    from callbacks.retrieval import RetrievalEval

    from .retrieval import held_out
    from .sample_data import SAMPLE_TEXT

    ret = cfg.callbacks.retrieval
    corpus = ret.corpus or (SAMPLE_TEXT if cfg.data.root is None else None)
    if corpus is None:
        raise ValueError("callbacks.retrieval.corpus: give the ntrex-layout folder the shards were built from "
                         "(its held-out lines are scored), or turn retrieval off with callbacks.retrieval.every=null")
    labels = sorted(set(manifest["languages"]) | {ret.pivot})
    documents = held_out(corpus, manifest["settings"], [k for k in labels if (Path(corpus) / f"{k}.txt").exists()])
    return RetrievalEval(documents, tokenizer, ret.every * budget, ret.pivot, ret.max_tokens)


def plugins() -> list:
    """Atomic checkpoint writes; under SLURM, Lightning's own auto-requeue off (callbacks/preemption.py owns it)."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from .checkpointing import AtomicCheckpointIO

    return [AtomicCheckpointIO()] + ([SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else [])


def train(cfg: DictConfig) -> int:
    logging.getLogger("streaming").setLevel(logging.WARNING)   # its INFO lines restate defaults we set explicitly

    import lightning as L
    import torch
    from hydra.core.hydra_config import HydraConfig

    from callbacks.preemption import Preemption
    from callbacks.reporting import ProgressBar
    from callbacks.sample_log import SampleLog
    from callbacks.token_budget import TokenBudget
    from data_prep.tokenizer import ordinary_ids

    from .checkpointing import RollingCheckpoint, newest_checkpoint
    from .hf import export_hf
    from .init_from import load_initial_weights, load_optimizer_moments
    from .module import MLMModule
    from .run_plan import plan_run

    run_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path(cfg.run_dir)
    ckpt_dir, finished_file = run_dir / "checkpoints", run_dir / "finished.json"
    last = ckpt_dir / "last.ckpt"
    plan = plan_run(cfg)
    root, manifest, tok_path, geo, dm = plan.root, plan.manifest, plan.tokenizer, plan.geometry, plan.datamodule
    tok, budget = manifest["tokenizer"], geo.budget
    if finished_file.exists():
        finished = json.loads(finished_file.read_text())
        print(f"run {run_dir} already finished at step {finished['step']}: checkpoint {finished['checkpoint']}, "
              f"Hugging Face export {finished['hf_export']}. To train on, start a new run from it: "
              f"experiment=NEW init_from={finished['checkpoint']}")
        return 0
    mixture_file = run_dir / "mixture.json"
    resume = newest_checkpoint(ckpt_dir) if ckpt_dir.exists() else None
    if resume and mixture_file.exists() and json.loads(mixture_file.read_text())["hash"] != dm.mixture_hash():
        raise ValueError(f"{resume} was trained on another data mixture (data root, seed, languages, τ, milestones, budget "
                         f"or batch geometry changed); resuming would repeat or skip data. Restore the settings of "
                         f"{mixture_file}, or start a new run with experiment=NEW init_from={resume}")
    run_dir.mkdir(parents=True, exist_ok=True)
    mixture_file.write_text(json.dumps({"hash": dm.mixture_hash(), "budget": budget,
                                        "segments": [{"start": g.start, "end": g.end, "languages": g.labels, "temperature": g.temperature}
                                                     for g in dm.segments]}, indent=1) + "\n")
    print(f"data {root}: budget {budget:,.0f} tokens = {geo.max_steps} steps of {geo.rows_per_step} rows x {geo.row_length}")
    for seg in dm.segments:
        print(f"segment {seg.start:,}-{seg.end:,} tokens: {seg.languages} ({len(seg.labels)} languages), τ={seg.temperature}\n{seg.mixture.table()}")
    L.seed_everything(cfg.seed, workers=True)
    module = MLMModule(plan.model, random_pool=ordinary_ids(tok_path), mask_id=tok["mask"], mask_ratio=cfg.mask_ratio,
                       val_mask_ratio=cfg.val_mask_ratio, val_languages=dm.val_labels(), lr=cfg.optimizer.lr,
                       betas=tuple(cfg.optimizer.betas), eps=cfg.optimizer.eps, weight_decay=cfg.optimizer.weight_decay,
                       seed=cfg.seed, attn_backend=cfg.model.attn_backend, accumulate=geo.accumulate,
                       compile=cfg.model.compile, loss_chunk_rows=cfg.model.loss_chunk_rows,
                       compile_optimizer=cfg.optimizer.compile)
    if cfg.init_from and resume is None:     # a stage's first launch; later launches resume its own checkpoint
        load_initial_weights(module.model, cfg.init_from)
        if cfg.init_optimizer:
            module.initial_optimizer_state = load_optimizer_moments(cfg.init_from)
        print(f"initialised weights{' and optimizer moments' if cfg.init_optimizer else ''} from {cfg.init_from}; "
              f"this stage's clock starts at 0")
    every = cfg.callbacks.checkpoint_every_tokens
    checkpoint = RollingCheckpoint(cfg.callbacks.keep_last_checkpoints, dirpath=ckpt_dir, filename="step{step:07.0f}",
                                   auto_insert_metric_name=False, save_last=True,
                                   every_n_train_steps=geo.steps_for_tokens(every) if every else cfg.callbacks.checkpoint_every_n_steps)
    preemption = Preemption(last, requeue=cfg.trainer.requeue)
    extra = [retrieval_callback(cfg, manifest, tok_path, budget)] if cfg.callbacks.retrieval.every else []
    if cfg.callbacks.sample_log:
        extra.append(SampleLog(run_dir / "samples"))
    if cfg.trainer.progress_bar:
        extra.append(ProgressBar())
    t = cfg.trainer
    trainer = L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        precision=t.precision or ("bf16-mixed" if torch.cuda.is_available() and t.accelerator != "cpu" else "32-true"),
        max_steps=geo.max_steps,
        val_check_interval=t.val_check_interval, check_val_every_n_epoch=None, limit_val_batches=t.limit_val_batches,
        log_every_n_steps=t.log_every_n_steps, enable_progress_bar=t.progress_bar, num_sanity_val_steps=0,
        default_root_dir=str(run_dir), logger=make_logger(t.logger, run_dir),
        callbacks=[checkpoint, *plan.schedules.callbacks(), TokenBudget(budget, cfg.callbacks.peak_flops), preemption, *extra],
        strategy=t.strategy, plugins=plugins(),
        reload_dataloaders_every_n_epochs=1,   # epoch i serves segment i
    )
    trainer.logger.log_hyperparams({"data_root": str(root), "budget_tokens": budget, "mixture_hash": dm.mixture_hash(),
                                    "segments": [{"start": g.start, "end": g.end, "shares": g.mixture.shares} for g in dm.segments]})
    if resume:
        print(f"resuming from {resume}")
    with warnings.catch_warnings():
        for message in HARMLESS_LIGHTNING_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    if preemption.stopped_at is not None:
        return 3
    if trainer.global_rank != 0:
        return 0
    hf_dir = export_hf(module.model, run_dir / "hf", tokenizer_model=tok_path)
    finished = {"step": trainer.global_step, "budget": budget, "checkpoint": str(last), "hf_export": str(hf_dir)}
    finished_file.write_text(json.dumps(finished, indent=1) + "\n")
    print(f"finished at step {trainer.global_step}: checkpoint {last}; Hugging Face export {hf_dir}; logs in {run_dir}")
    return 0


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="config")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input():
        validate(cfg)
        code = train(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
