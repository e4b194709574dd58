"""Everything a run decides before training: data, batch geometry, schedules, segments and mixtures.
`python -m mmbert_pl.run` trains on it; `python -m mmbert_pl.plan` only shows it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from callbacks.batch_warmup import BatchWarmup
from callbacks.language_set import LanguageSetSchedule
from callbacks.lr import LRSchedule
from callbacks.mask_ratio import MaskRatioSchedule
from callbacks.temperature import TemperatureSchedule

from mmbert_pl.training.batch_geometry import BatchGeometry, batch_geometry
from mmbert_pl.data.datamodule import MixtureDataModule
from mmbert_pl.model import EncoderConfig
from mmbert_pl.training.model_shape import run_model


@dataclass
class Schedules:
    """One Lightning callback per schedule, token counts scaled from shares of the run's budget."""
    lr: LRSchedule
    mask: MaskRatioSchedule
    languages: LanguageSetSchedule
    temperature: TemperatureSchedule
    batch: BatchWarmup

    def callbacks(self) -> list:
        return [self.batch, self.lr, self.mask, self.languages, self.temperature]


@dataclass
class RunPlan:
    root: Path
    manifest: dict
    tokenizer: Path
    geometry: BatchGeometry
    model: EncoderConfig
    schedules: Schedules
    datamodule: MixtureDataModule


def schedules(cfg: DictConfig, geo: BatchGeometry) -> Schedules:
    budget, lr = geo.budget, cfg.callbacks.lr
    points = cfg.callbacks.mask.points
    mask = [(share * budget, ratio) for share, ratio in points] if points else cfg.mask_ratio
    return Schedules(
        lr=LRSchedule(cfg.optimizer.lr, t_warmup=lr.warmup * budget, t_max=budget, t_decay=lr.decay * budget,
                      alpha_f=lr.alpha_f, shape=lr.shape),
        mask=MaskRatioSchedule(mask, cfg.callbacks.mask.mode),
        languages=LanguageSetSchedule(plain(cfg.data.languages), [(s * budget, plain(v)) for s, v in cfg.callbacks.language_milestones]),
        temperature=TemperatureSchedule(cfg.data.temperature, [(s * budget, t) for s, t in cfg.callbacks.temperature_milestones]),
        batch=BatchWarmup(geo.warmup_min_rounds, geo.full_rounds, geo.warmup_tokens, geo.round_rows, geo.micro_batch * geo.devices),
    )


def plain(value):
    """A config list as a Python list (a named set stays a string)."""
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


def resolve_data(cfg: DictConfig) -> tuple[Path, dict, Path | None]:
    """(shard folder, its manifest, its tokenizer): `data.root`, or the bundled sample prepared into the cache;
    for a plan over `data.counts`, (the CSV, a manifest made from it, None)."""
    from data_prep.manifest import read_manifest, shard_tokenizer

    from mmbert_pl.sample.prepare import prepare_sample

    if cfg.data.counts:
        from mmbert_pl.data.paper_counts import counts_file, counts_manifest

        path = counts_file(cfg.data.counts)
        return path, counts_manifest(path, cfg.data.row_length or 1024), None
    s = cfg.data.sample
    row_length = cfg.data.row_length or s.row_length
    if cfg.data.remote:
        from data_prep.remote import fetch_shard_folder

        if not cfg.data.root:
            raise ValueError(f"data.remote={cfg.data.remote} needs data.root=DIR: the node-local folder its shards are cached in")
        fetch_shard_folder(cfg.data.remote, Path(cfg.data.root))
    root = Path(cfg.data.root) if cfg.data.root else prepare_sample(cfg.data.cache_dir, s.vocab_size, row_length, s.val_fraction)
    manifest = read_manifest(root)
    if manifest is None:
        raise ValueError(f"data.root={root} has no manifest.json; build it with `python -m data_prep.shards --out {root} ...`")
    if cfg.data.row_length and manifest["row_length"] != cfg.data.row_length:
        raise ValueError(f"data.root={root} holds rows of {manifest['row_length']} tokens; this config expects "
                         f"data.row_length={cfg.data.row_length}. Build shards with --row-length {cfg.data.row_length}")
    return root, manifest, shard_tokenizer(root, manifest)


def plan_run(cfg: DictConfig, round_rows: int | None = None) -> RunPlan:
    """`round_rows`: a resumed run's batch-warmup unit, from its first launch (batch_geometry.py)."""
    root, manifest, tok_path = resolve_data(cfg)
    tok = manifest["tokenizer"]
    geo = batch_geometry(cfg, manifest["row_length"], round_rows)
    model_cfg = run_model(cfg, tok)
    if manifest["row_length"] > model_cfg.max_position:
        raise ValueError(f"rows of {manifest['row_length']} tokens exceed the model's max_position {model_cfg.max_position}")
    scheduled = schedules(cfg, geo)
    languages, temperatures = scheduled.languages, scheduled.temperature
    dm = MixtureDataModule(str(root), languages.initial, temperatures.initial, geo.budget, geo.micro_batch, seed=cfg.seed,
                           num_workers=cfg.data.num_workers, max_epochs=cfg.data.max_epochs,
                           num_canonical_nodes=cfg.data.num_canonical_nodes, vocab_size=model_cfg.vocab_size,
                           boost=dict(cfg.data.boost), language_milestones=languages.milestones,
                           temperature_milestones=temperatures.milestones, step_tokens=geo.tokens_per_step,
                           manifest=manifest if cfg.data.counts else None, remote=cfg.data.remote)
    return RunPlan(root, manifest, tok_path, geo, model_cfg, scheduled, dm)
