"""`python -m mmbert_pl.run`: compose -> validate -> prepare data -> fit (or resume) -> export.

The run directory is a function of the config (`runs_dir/experiment`; in a sweep, the sweep folder and
the job's overrides), never of the time, so the same command resumes from the newest readable
checkpoint, and a finished run reports where its results are. Exit codes: 0 finished, 2 bad input,
3 stopped by a signal with a checkpoint saved (rerun to resume).
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mmbert_pl.core.bad_input import exit_on_bad_input
from mmbert_pl.training.config_schema import register, validate

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
    # under DDP/FSDP, once per validation metric (two per language: 3,666 lines at mmBERT's 1833): the values are
    # torchmetrics' compute(), which has already summed over the ranks
    r"It is recommended to use `self.log\('val/",
)


def make_logger(kind: str, run_dir: Path, keep_through: int | None):
    """`keep_through`: a resumed checkpoint's logger step; the CSV log keeps its rows up to it and appends."""
    import importlib.util

    from lightning.pytorch import loggers

    from mmbert_pl.training.metrics_csv import ResumingCSVLogger

    needs = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}.get(kind, ())
    if needs and not any(importlib.util.find_spec(m) for m in needs):
        raise ValueError(f"trainer.logger={kind} needs the {needs[0]} package: pip install -e '.[loggers]' (or use trainer.logger=csv)")
    if kind == "csv":
        return ResumingCSVLogger(run_dir, keep_through)
    if kind == "tensorboard":
        return loggers.TensorBoardLogger(run_dir, name="tb", version="")
    return loggers.WandbLogger(save_dir=str(run_dir), offline=True, project="mmbert_pl")


def retrieval_callback(cfg: DictConfig, root: Path, manifest: dict, tokenizer: Path, budget: float):
    """Retrieval on the lines the shards held out: from `callbacks.retrieval.corpus` (the parallel folder they were
    built from), or kept by the shards themselves (`data_prep.shards --parallel`, as the bundled sample is built).
    Without either it is off, said in one line."""
    from callbacks.retrieval import RetrievalEval
    from data_prep.manifest import held_out_lines

    from mmbert_pl.embeddings.retrieval import held_out

    ret = cfg.callbacks.retrieval
    labels = sorted(set(manifest["languages"]) | {ret.pivot})
    if ret.corpus:
        documents = held_out(ret.corpus, manifest["settings"], [k for k in labels if (Path(ret.corpus) / f"{k}.txt").exists()])
    elif manifest["settings"].get("parallel"):
        documents = held_out_lines(root, manifest, labels)
    else:
        print(f"retrieval during training is off: {root} is not a parallel corpus (build it with data_prep.shards --parallel, "
              f"or give callbacks.retrieval.corpus=DIR)", file=sys.stderr)
        return None
    if ret.pivot not in documents:
        print(f"retrieval during training is off: the pivot {ret.pivot} has no held-out lines in {root} "
              f"(set callbacks.retrieval.pivot=LABEL)", file=sys.stderr)
        return None
    return RetrievalEval(documents, tokenizer, ret.every * budget, ret.pivot, ret.max_tokens)


def plugins() -> list:
    """Atomic checkpoint writes; under SLURM, Lightning's own auto-requeue off (callbacks/preemption.py owns it)."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from mmbert_pl.files.checkpointing import AtomicCheckpointIO

    return [AtomicCheckpointIO()] + ([SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else [])


def write_json(path: Path, value: dict) -> None:
    from data_prep.write_errors import write_atomically

    write_atomically(path, json.dumps(value, indent=1) + "\n")


def save_run_config(cfg: DictConfig, run_dir: Path) -> None:
    """The composed config and the overrides in `.hydra/`, written only once the run is known to start
    (Hydra's own copy would be written before validation and overwrite a resumed run's with a bad one)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from data_prep.write_errors import writing

    out = run_dir / ".hydra"
    with writing(out):
        out.mkdir(exist_ok=True)
        OmegaConf.save(cfg, out / "config.yaml")
        if HydraConfig.initialized():
            OmegaConf.save(HydraConfig.get().overrides.task, out / "overrides.yaml")


def finished_result(finished_file: Path) -> dict | None:
    """finished.json, if the checkpoint and export it names still load; else None (with a line why)."""
    from mmbert_pl.files.checkpointing import checkpoint_problem
    from mmbert_pl.files.hf import export_problem

    if not finished_file.exists():
        return None
    finished = json.loads(finished_file.read_text())
    problem = checkpoint_problem(Path(finished["checkpoint"])) or export_problem(finished["hf_export"])
    if problem:
        print(f"warning: {finished_file} names results that no longer load ({problem}); finishing the run again", flush=True)
        return None
    return finished


def train(cfg: DictConfig, run_dir: Path) -> int:
    logging.getLogger("streaming").setLevel(logging.WARNING)   # its INFO lines restate defaults we set explicitly

    from mmbert_pl.training.run_lock import RunLock, is_global_rank_zero
    from mmbert_pl.run_plan import plan_run

    if cfg.data.counts:
        raise ValueError(f"data.counts={cfg.data.counts} describes a corpus by its token counts, for `python -m mmbert_pl.plan`; "
                         f"training needs shards: data.root=<a folder data_prep.shards wrote>")
    plan = plan_run(cfg, first_launch_round_rows(run_dir))   # every check of config and data, before the run folder is touched
    initial = initial_state(cfg, plan, run_dir)
    lock = RunLock(run_dir) if is_global_rank_zero() else None
    if lock:
        lock.acquire()
    try:
        return fit(cfg, run_dir, plan, initial, lock is not None)
    finally:
        if lock:
            lock.release()


def first_launch_round_rows(run_dir: Path) -> int | None:
    """A resumed run's batch-warmup unit in rows, as its first launch recorded it (None: a first launch, or no warmup)."""
    from mmbert_pl.files.checkpointing import newest_checkpoint

    settings = run_dir / "settings.json"
    if not settings.exists() or not (run_dir / "checkpoints").exists() or newest_checkpoint(run_dir / "checkpoints") is None:
        return None
    return json.loads(settings.read_text()).get("batch.warmup_round_rows")


def layout_change(first: dict, now: dict, rows: int) -> str | None:
    """The one line a resume on another layout prints, or None when nothing changed."""
    def processes(n: int) -> str:
        return f"{n} process{'es' if n != 1 else ''}"

    changed = [f"{name} {now[key]} instead of {first[key]}" for key, name in
               (("micro_batch", "micro-batch"), ("accumulate", "accumulation"), ("num_workers", "loader workers per process"))
               if first.get(key) != now[key]]
    if first.get("processes") == now["processes"] and not changed:
        return None
    where = (f"on {processes(now['processes'])} instead of {first.get('processes')}" if first.get("processes") != now["processes"]
             else f"on {processes(now['processes'])}")
    return f"resuming {where}: {', '.join(changed) or 'the same micro-batches'}; the same global batch of {rows} rows"


def initial_state(cfg: DictConfig, plan, run_dir: Path):
    """`init_from=`, read and checked, on a stage's first launch only: later launches resume its own checkpoint."""
    from mmbert_pl.files.checkpointing import newest_checkpoint
    from mmbert_pl.training.init_from import read_initial_state

    ckpt_dir = run_dir / "checkpoints"
    if not cfg.init_from or (ckpt_dir.exists() and newest_checkpoint(ckpt_dir)):
        return None
    return read_initial_state(cfg.init_from, plan.model, plan.manifest["tokenizer"]["sha256"], cfg.init_weights_only)


def fit(cfg: DictConfig, run_dir: Path, plan, initial, rank_zero: bool) -> int:
    import lightning as L
    import torch

    from callbacks.preemption import Preempted, Preemption
    from callbacks.reporting import ProgressBar
    from callbacks.sample_log import SampleLog
    from callbacks.token_budget import TokenBudget
    from callbacks.validation_cadence import ValidationCadence
    from data_prep.tokenizer import ordinary_ids

    from mmbert_pl.files.checkpointing import RollingCheckpoint, checkpoint_problem, newest_checkpoint
    from mmbert_pl.files.hf import export_hf, export_problem
    from mmbert_pl.training.metrics_csv import logged_batches
    from mmbert_pl.training.module import MLMModule
    from mmbert_pl.training.run_identity import changed_settings, run_settings, upgraded
    from mmbert_pl.training.sharding import is_sharded, unsharded_copy
    from mmbert_pl.training.strategy import make_strategy

    ckpt_dir, finished_file = run_dir / "checkpoints", run_dir / "finished.json"
    last = ckpt_dir / "last.ckpt"
    root, manifest, tok_path, geo, dm = plan.root, plan.manifest, plan.tokenizer, plan.geometry, plan.datamodule
    tok, budget = manifest["tokenizer"], geo.budget
    resume = newest_checkpoint(ckpt_dir) if ckpt_dir.exists() else None
    if resume and resume.is_dir() and cfg.trainer.strategy != "fsdp":
        raise ValueError(f"{resume} is a sharded checkpoint (trainer.checkpoint_format=sharded), which only trainer.strategy=fsdp "
                         f"reads: resume with that strategy, or first turn it into one file: python -m mmbert_pl.consolidate {resume}")
    mixture_file = run_dir / "mixture.json"
    if resume and mixture_file.exists() and json.loads(mixture_file.read_text())["hash"] != dm.mixture_hash():
        raise ValueError(f"{resume} was trained on another data mixture (data root, seed, languages, τ, milestones, budget "
                         f"or batch geometry changed); resuming would repeat or skip data. Restore the settings of "
                         f"{mixture_file}, or start a new run with experiment=NEW init_from={resume}")
    settings_file, settings = run_dir / "settings.json", run_settings(cfg, plan)
    first = upgraded(json.loads(settings_file.read_text()), settings, geo.accumulate) if resume and settings_file.exists() else None
    if first is not None and (changed := changed_settings(first, settings)):
        raise ValueError(f"{resume} was trained with other model or recipe settings: {'; '.join(changed)}. Resuming would "
                         f"train another recipe from its state. Restore them (see {settings_file}), or start a new run "
                         f"from it: experiment=NEW init_from={resume}")
    layout_file = run_dir / "layout.json"
    layout = {"processes": geo.devices, "micro_batch": geo.micro_batch, "accumulate": geo.accumulate, "num_workers": cfg.data.num_workers}
    if resume and layout_file.exists() and (line := layout_change(json.loads(layout_file.read_text()), layout, geo.rows_per_step)):
        print(line)
    finished = finished_result(finished_file)
    if finished:
        print(f"run {run_dir} already finished at step {finished['step']}: checkpoint {finished['checkpoint']}, "
              f"Hugging Face export {finished['hf_export']}. To train on, start a new run from it: "
              f"experiment=NEW init_from={finished['checkpoint']}")
        return 0
    if rank_zero:
        save_run_config(cfg, run_dir)
        write_json(settings_file, settings)
        write_json(layout_file, layout)
        write_json(mixture_file, {"hash": dm.mixture_hash(), "budget": budget,
                                  "segments": [{"start": g.start, "end": g.end, "languages": g.labels, "temperature": g.temperature}
                                               for g in dm.segments]})
    print(f"data {root}: budget {budget:,.0f} tokens = {geo.max_steps} steps of {geo.rows_per_step} rows x {geo.row_length}")
    if left_out := dm.left_out():
        print(left_out)
    for seg in dm.segments:
        print(f"segment {seg.start:,}-{seg.end:,} tokens: {seg.set_name} ({len(seg.labels)} languages), τ={seg.temperature}\n{seg.mixture.table()}")
    L.seed_everything(cfg.seed, workers=True)
    module = MLMModule(plan.model, random_pool=ordinary_ids(tok_path), mask_id=tok["mask"], mask_ratio=plan.schedules.mask.at(0),
                       val_mask_ratio=cfg.val_mask_ratio, val_languages=dm.val_labels(), lr=cfg.optimizer.lr,
                       betas=tuple(cfg.optimizer.betas), eps=cfg.optimizer.eps, weight_decay=cfg.optimizer.weight_decay,
                       seed=cfg.seed, attn_backend=cfg.model.attn_backend, accumulate=geo.accumulate,
                       compile=cfg.model.compile, loss_chunk_rows=cfg.model.loss_chunk_rows,
                       compile_optimizer=cfg.optimizer.compile, tokenizer_sha256=tok["sha256"])
    if initial and resume is None:
        module.model.load_state_dict(initial.weights)
        module.initial_optimizer_state = initial.optimizer
        print(initial.describe())
    every = cfg.callbacks.checkpoint_every_tokens
    checkpoint = RollingCheckpoint(cfg.callbacks.keep_last_checkpoints, dirpath=ckpt_dir, filename="step{step:07.0f}",
                                   auto_insert_metric_name=False, save_last=True,
                                   every_n_train_steps=geo.steps_for_tokens(every) if every else cfg.callbacks.checkpoint_every_n_steps)
    preemption = Preemption(last, requeue=cfg.trainer.requeue, agree_every=cfg.trainer.preemption_agree_every)
    retrieval = retrieval_callback(cfg, plan.root, manifest, tok_path, budget) if cfg.callbacks.retrieval.every else None
    extra = [retrieval] if retrieval is not None else []
    if cfg.callbacks.sample_log:
        extra.append(SampleLog(run_dir / "samples"))
    if cfg.trainer.progress_bar:
        extra.append(ProgressBar())
    t = cfg.trainer
    trainer = L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        precision=t.precision or ("bf16-mixed" if torch.cuda.is_available() and t.accelerator != "cpu" else "32-true"),
        max_steps=geo.max_steps,
        # Lightning's own count (loader batches = micro-batches) never fires: ValidationCadence counts optimizer steps
        val_check_interval=sys.maxsize, check_val_every_n_epoch=None, limit_val_batches=t.limit_val_batches,
        log_every_n_steps=t.log_every_n_steps, enable_progress_bar=t.progress_bar, num_sanity_val_steps=0,
        default_root_dir=str(run_dir), logger=make_logger(t.logger, run_dir, logged_batches(resume) if resume else None),
        callbacks=[checkpoint, *plan.schedules.callbacks(), TokenBudget(budget, cfg.callbacks.peak_flops),
                   ValidationCadence(t.val_check_interval), preemption, *extra],
        strategy=make_strategy(t), plugins=plugins(),
        reload_dataloaders_every_n_epochs=1,   # epoch i serves segment i
    )
    trainer.logger.log_hyperparams({"data_root": str(root), "budget_tokens": budget, "mixture_hash": dm.mixture_hash(),
                                    "segments": [{"start": g.start, "end": g.end, "shares": g.mixture.shares} for g in dm.segments]})
    if resume:
        print(f"resuming from {resume}")
    with warnings.catch_warnings():
        for message in HARMLESS_LIGHTNING_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
        except Preempted:
            return 3
    # Rank 0 writes last.ckpt, so its reading decides for every rank: another rank that read the file after rank 0 had
    # already rewritten it would skip the save and leave rank 0 alone in the save's barrier.
    problem = trainer.strategy.broadcast(checkpoint_problem(last, trainer.global_step)
                                         or ("sharded: the final one is one file" if last.is_dir() else None), src=0)
    if problem:
        # last.ckpt must hold the final step, in one file (init_from=, merge and evaluate read it): the step cadence
        # need not end on it, and the newest checkpoint may be unreadable while the one resumed from had already
        # ended the run. Every rank takes part in the save.
        unreadable = last.exists() and checkpoint_problem(last)
        with getattr(trainer.strategy, "consolidated", contextlib.nullcontext)():
            trainer.save_checkpoint(last, weights_only=False)
        if unreadable:
            print(f"{last} was unreadable ({unreadable}); rewrote it from the final state (step {trainer.global_step}, "
                  f"resumed from {resume})", flush=True)
        problem = checkpoint_problem(last, trainer.global_step)     # the rewrite reads back
    model = unsharded_copy(module.model) if is_sharded(module.model) else module.model    # a collective under FSDP
    if trainer.global_rank != 0:
        return 0
    hf_dir = export_hf(model, run_dir / "hf", tokenizer=tok_path)
    if problem := problem or export_problem(hf_dir):
        raise RuntimeError(f"the results of {run_dir} do not read back ({problem}); finished.json is not written")
    finished = {"step": trainer.global_step, "budget": budget, "checkpoint": str(last), "hf_export": str(hf_dir),
                "data_root": str(root)}
    write_json(finished_file, finished)
    print(f"finished at step {trainer.global_step}: checkpoint {last}; Hugging Face export {hf_dir}; logs in {run_dir}")
    return 0


def run_dir_of(cfg: DictConfig) -> Path:
    """`run_dir` (deterministic: a rerun or a requeued job finds its checkpoints); in a sweep, the job's folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.run_dir)


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = run_dir_of(cfg)
    try:
        with exit_on_bad_input(run_dir):
            validate(cfg)
            code = train(cfg, run_dir)
    except SystemExit:
        with contextlib.suppress(OSError):      # a sweep job's folder that Hydra made for a job that never started
            run_dir.rmdir()                     # (rmdir removes only an empty folder)
        raise
    if code:
        sys.exit(code)


if __name__ == "__main__":
    from data_prep.quick_exit import freeze_at_exit

    freeze_at_exit()
    main()
