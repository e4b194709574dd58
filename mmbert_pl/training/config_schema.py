"""The run's config schema: Hydra rejects unknown keys and wrong types at compose time with it;
`validate` adds the range checks a schema cannot express, before any work starts."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from mmbert_pl.core.schedules import SHAPES

from mmbert_pl.model.attention import BACKENDS
from mmbert_pl.training.batch_geometry import micro_batches_for
from mmbert_pl.model.config import CONFIGS


@dataclass
class ModelConf:
    name: str = "tiny"
    attn_backend: str = "auto"
    compile: bool = False               # torch.compile the dense parts of every layer (attention and masking stay eager)
    loss_chunk_rows: int = 2048         # labelled tokens per decoder chunk in the loss: memory vs. kernel size
    global_rope_theta: float = 10000.0
    local_rope_theta: float = 10000.0


@dataclass
class SampleConf:
    """How the bundled sample is prepared when `data.root` is not given."""
    vocab_size: int = 4096
    row_length: int = 512
    val_fraction: float = 0.1


@dataclass
class DataConf:
    root: Optional[str] = None          # a folder written by data_prep.shards (with remote: its node-local cache); None: the sample
    remote: Optional[str] = None        # s3://bucket/prefix (gs://, oci://, ...) holding that folder; S3_ENDPOINT_URL for S3-compatible stores
    counts: Optional[str] = None        # plan only: languages and tokens from a language_counts.csv (`mmbert`), no shards
    cache_dir: str = "${oc.env:MMBERT_CACHE,${oc.env:HOME}/.cache/mmbert_pl}"
    languages: Any = None               # None: every label of the shards; a named set (pretrain, ext, decay_*) or a list of labels
    temperature: float = 0.7
    max_epochs: float = 5.0
    micro_batch: int = 8
    num_workers: int = 0
    num_canonical_nodes: int = 1
    boost: dict[str, float] = field(default_factory=dict)   # ISO code or label -> multiplier of its n^τ weight
    global_batch_rows: Optional[int] = None   # rows per step (a stage sets it), or trainer.accumulate_grad_batches
    row_length: Optional[int] = None          # expected row length of the shards (a stage sets it); checked
    sample: SampleConf = field(default_factory=SampleConf)


@dataclass
class OptimizerConf:
    lr: float = 8e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 8e-5
    compile: bool = False               # StableAdamW's update torch.compile'd, a tensor at a time (fewer passes)


@dataclass
class TrainerConf:
    accelerator: str = "auto"
    devices: int = 1                    # per node
    num_nodes: int = 1
    precision: Optional[str] = None     # None: bf16-mixed on GPU, 32-true on CPU
    max_steps: Optional[int] = None     # the budget in optimizer steps (trainer/*.yaml sets it), or ...
    max_tokens: Optional[float] = None  # ... in tokens (padding included; a stage sets it). Exactly one of the two.
    accumulate_grad_batches: Optional[int] = None   # micro-batches per step (null: 1); or data.global_batch_rows
    val_check_interval: int = 100       # optimizer steps between validations (always at the end of a step)
    limit_val_batches: int = 4
    log_every_n_steps: int = 10
    logger: str = "csv"                 # csv | tensorboard | wandb (offline)
    strategy: str = "auto"              # auto | ddp | ddp_spawn ... (Lightning's names); fsdp = FSDP2 (mmbert_pl/training/strategy.py)
    checkpoint_format: str = "consolidated"   # or sharded (strategy=fsdp): every rank writes its shards in parallel;
                                        # the final last.ckpt is one file all the same (python -m mmbert_pl.consolidate)
    requeue: bool = True                # under SLURM, a SIGUSR1/SIGUSR2 checkpoint is followed by `scontrol requeue`
    preemption_agree_every: int = 5     # several processes: optimizer steps between the ranks' non-blocking agreements
                                        # on a stop signal; it is acted on at most 2x this many steps after it arrives
    progress_bar: bool = True


@dataclass
class LRConf:
    """Trapezoid over the run's token budget; warmup and decay are shares of it."""
    warmup: float = 0.1
    decay: float = 0.5
    alpha_f: float = 0.02
    shape: str = "1-sqrt"


@dataclass
class MaskConf:
    """None: the constant top-level `mask_ratio`; else [[budget share, ratio], ...] annealed by `mode`
    (with `mask_ratio: null`: one of the two sets the ratio)."""
    points: Any = None
    mode: str = "linear"


@dataclass
class BatchWarmupConf:
    """The global batch grows from min_accumulate micro-batch rounds to the full batch over this share of the budget."""
    share: float = 0.0
    min_accumulate: int = 1


@dataclass
class RetrievalConf:
    """Cross-lingual retrieval on held-out parallel documents during training (callbacks/retrieval.py)."""
    every: Optional[float] = 0.5        # share of the budget between evaluations; null: off
    corpus: Optional[str] = None        # ntrex-layout folder the shards were built from; null: the bundled sample
    pivot: str = "eng_Latn"
    max_tokens: int = 256               # documents are truncated to their head


@dataclass
class CallbacksConf:
    checkpoint_every_n_steps: int = 100
    checkpoint_every_tokens: Optional[float] = None   # overrides the steps: a cadence in tokens (at the full batch)
    keep_last_checkpoints: int = 3
    sample_log: bool = False            # samples/rank<R>.tsv: the sample ids of every micro-batch (audits, resume tests)
    lr: LRConf = field(default_factory=LRConf)
    mask: MaskConf = field(default_factory=MaskConf)
    batch_warmup: BatchWarmupConf = field(default_factory=BatchWarmupConf)
    # [[budget share, named set or list of labels], ...]: the language set from that point on
    language_milestones: Any = field(default_factory=list)
    # [[budget share, τ], ...]
    temperature_milestones: Any = field(default_factory=list)
    retrieval: RetrievalConf = field(default_factory=RetrievalConf)
    peak_flops: Optional[float] = None      # per device, for MFU (e.g. 989e12 for an H100's dense bf16)


@dataclass
class RunConf:
    model: ModelConf = field(default_factory=ModelConf)
    data: DataConf = field(default_factory=DataConf)
    optimizer: OptimizerConf = field(default_factory=OptimizerConf)
    trainer: TrainerConf = field(default_factory=TrainerConf)
    callbacks: CallbacksConf = field(default_factory=CallbacksConf)
    experiment: str = "sample"
    runs_dir: str = "${oc.env:MMBERT_RUNS,runs}"
    run_dir: str = "${runs_dir}/${experiment}"
    seed: int = 21
    mask_ratio: Optional[float] = None  # a constant ratio (config.yaml: 0.3), or callbacks.mask.points; not both
    val_mask_ratio: float = 0.15
    budget_scale: float = 1.0           # multiplies trainer.max_tokens: the same recipe shrunk (or grown)
    init_from: Optional[str] = None     # the previous stage's .ckpt: its weights and optimizer state; the clock restarts
    init_weights_only: bool = False     # take only the weights, with fresh moments (a merged or HF model needs it)
    recipe: Any = None                  # per-model values a stage file picks from with ${recipe.${model.name}.KEY}


def register() -> None:
    ConfigStore.instance().store(name="schema", node=RunConf)


def one_setting_each(cfg: Any) -> list[str]:
    """Pairs of keys that set the same thing: exactly one of each is set, so no value is silently dropped.
    (A stage file sets one and nulls the other: `trainer.max_steps: null` beside its `max_tokens`.)"""
    t, problems = cfg.trainer, []
    if t.max_steps is not None and t.max_tokens is not None:
        problems.append(f"trainer.max_steps={t.max_steps} and trainer.max_tokens={t.max_tokens:g} both set the budget: "
                        f"keep one (trainer.max_tokens=null to count steps in this stage's batch; budget_scale=F to shrink "
                        f"a stage's token budget)")
    if t.max_steps is None and t.max_tokens is None:
        problems.append("no budget: set trainer.max_steps=N (optimizer steps) or trainer.max_tokens=T")
    if cfg.data.global_batch_rows is not None and t.accumulate_grad_batches is not None:
        problems.append(f"data.global_batch_rows={cfg.data.global_batch_rows} and trainer.accumulate_grad_batches="
                        f"{t.accumulate_grad_batches} both set the batch: keep one (data.global_batch_rows=null to "
                        f"accumulate a fixed number of micro-batches)")
    points = cfg.callbacks.mask.points
    if points is not None and cfg.mask_ratio is not None:
        problems.append(f"mask_ratio={cfg.mask_ratio} and callbacks.mask.points={list(map(list, points))} both set the "
                        f"mask ratio: keep one (mask_ratio=null to anneal through the points, or callbacks.mask.points=null)")
    if points is None and cfg.mask_ratio is None:
        problems.append("no mask ratio: set mask_ratio=R or callbacks.mask.points=[[share, ratio], ...]")
    return problems


def layout_problem(rows: int | None, micro: int, processes: int) -> str:
    """Why `rows` per step cannot be laid out as micro-batches of `micro` on `processes`, and which micro-batches can."""
    if rows is None or rows <= 0:
        return f"data.global_batch_rows={rows} must be a positive number of rows"
    return (f"data.global_batch_rows={rows} is not a multiple of data.micro_batch x processes = {micro} x {processes} = "
            f"{micro * processes}; {micro_batches_for(rows, processes)}")


def validate(cfg: Any) -> None:
    """Range checks with messages that name the key, the value and what is valid."""
    problems = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    need(cfg.model.name in CONFIGS, f"model.name={cfg.model.name!r}: choose one of {sorted(CONFIGS)}")
    need(cfg.model.attn_backend in BACKENDS, f"model.attn_backend={cfg.model.attn_backend!r}: choose one of {list(BACKENDS)}")
    need(cfg.model.loss_chunk_rows > 0, f"model.loss_chunk_rows={cfg.model.loss_chunk_rows}: must be > 0")
    need(cfg.model.global_rope_theta > 0 and cfg.model.local_rope_theta > 0, "RoPE θ must be > 0")
    for key in ("mask_ratio", "val_mask_ratio"):
        need(cfg[key] is None or 0 < cfg[key] < 1, f"{key}={cfg[key]}: must be in (0, 1)")
    need(cfg.data.temperature > 0, f"data.temperature={cfg.data.temperature}: must be > 0")
    need(cfg.data.max_epochs > 0, f"data.max_epochs={cfg.data.max_epochs}: must be > 0")
    need(cfg.data.micro_batch > 0, f"data.micro_batch={cfg.data.micro_batch}: must be > 0")
    need(cfg.data.num_workers >= 0, f"data.num_workers={cfg.data.num_workers}: must be >= 0")
    for problem in one_setting_each(cfg):
        need(False, problem)
    need(cfg.trainer.max_steps is None or cfg.trainer.max_steps > 0, f"trainer.max_steps={cfg.trainer.max_steps}: the budget must be > 0 steps")
    accumulate = cfg.trainer.accumulate_grad_batches
    need(accumulate is None or accumulate > 0, f"trainer.accumulate_grad_batches={accumulate}: must be > 0")
    need(cfg.trainer.max_tokens is None or cfg.trainer.max_tokens > 0, f"trainer.max_tokens={cfg.trainer.max_tokens}: the budget must be > 0 tokens")
    need(not cfg.init_weights_only or bool(cfg.init_from), "init_weights_only=true needs init_from=<a model>")
    need(cfg.budget_scale > 0, f"budget_scale={cfg.budget_scale}: must be > 0")
    need(cfg.budget_scale == 1 or cfg.trainer.max_tokens is not None, "budget_scale scales trainer.max_tokens: set it (a stage does)")
    rows = cfg.data.global_batch_rows
    per_pass = cfg.data.micro_batch * cfg.trainer.devices * cfg.trainer.num_nodes
    need(rows is None or (rows > 0 and rows % per_pass == 0), layout_problem(rows, cfg.data.micro_batch, per_pass // cfg.data.micro_batch))
    need(cfg.trainer.preemption_agree_every >= 1,
         f"trainer.preemption_agree_every={cfg.trainer.preemption_agree_every}: a number of optimizer steps >= 1")
    need(cfg.trainer.checkpoint_format in ("consolidated", "sharded"),
         f"trainer.checkpoint_format={cfg.trainer.checkpoint_format!r}: choose consolidated or sharded")
    need(cfg.trainer.checkpoint_format != "sharded" or cfg.trainer.strategy == "fsdp",
         f"trainer.checkpoint_format=sharded needs trainer.strategy=fsdp (trainer=gpu_fsdp); under "
         f"{cfg.trainer.strategy} every rank holds the whole model: use consolidated")
    need(cfg.trainer.strategy != "fsdp" or not cfg.optimizer.compile,
         "optimizer.compile=true updates whole tensors and trainer.strategy=fsdp shards them: set optimizer.compile=false")
    need(cfg.trainer.logger in ("csv", "tensorboard", "wandb"), f"trainer.logger={cfg.trainer.logger!r}: choose csv, tensorboard or wandb")
    need(cfg.optimizer.lr > 0, f"optimizer.lr={cfg.optimizer.lr}: must be > 0")
    need(len(cfg.optimizer.betas) == 2 and all(0 <= b < 1 for b in cfg.optimizer.betas), f"optimizer.betas={list(cfg.optimizer.betas)}: two values in [0, 1)")
    need(cfg.callbacks.checkpoint_every_n_steps > 0, "callbacks.checkpoint_every_n_steps must be > 0")
    need(cfg.callbacks.keep_last_checkpoints > 0, "callbacks.keep_last_checkpoints must be > 0")
    every = cfg.callbacks.checkpoint_every_tokens
    need(every is None or every > 0, f"callbacks.checkpoint_every_tokens={every}: must be > 0, or null for the step cadence")
    lr = cfg.callbacks.lr
    need(0 <= lr.warmup <= 1 and 0 <= lr.decay <= 1 and lr.warmup + lr.decay <= 1,
         f"callbacks.lr.warmup={lr.warmup}, decay={lr.decay}: shares of the budget in [0, 1] that sum to <= 1")
    need(0 <= lr.alpha_f <= 1, f"callbacks.lr.alpha_f={lr.alpha_f}: must be in [0, 1]")
    need(lr.shape in SHAPES, f"callbacks.lr.shape={lr.shape!r}: choose one of {list(SHAPES)}")
    bw = cfg.callbacks.batch_warmup
    need(0 <= bw.share <= 1 and bw.min_accumulate >= 1,
         f"callbacks.batch_warmup: share={bw.share} must be in [0, 1], min_accumulate={bw.min_accumulate} >= 1")
    full = rows // per_pass if rows else (accumulate or 1)
    need(bw.share == 0 or bw.min_accumulate < full,
         f"callbacks.batch_warmup.min_accumulate={bw.min_accumulate} must be below the full batch's {full} micro-batch rounds")
    ret = cfg.callbacks.retrieval
    need(ret.every is None or 0 < ret.every <= 1, f"callbacks.retrieval.every={ret.every}: a share of the budget in (0, 1], or null")
    need(ret.max_tokens >= 3, f"callbacks.retrieval.max_tokens={ret.max_tokens}: must be >= 3")
    need(cfg.callbacks.mask.mode in ("linear", "steps"), f"callbacks.mask.mode={cfg.callbacks.mask.mode!r}: linear or steps")
    for share, value in [*cfg.callbacks.language_milestones, *cfg.callbacks.temperature_milestones]:
        need(0 <= share <= 1, f"milestone [{share}, {value}]: the share of the budget must be in [0, 1]")
    for share, tau in cfg.callbacks.temperature_milestones:
        need(tau > 0, f"temperature milestone [{share}, {tau}]: τ must be > 0")
    for point in cfg.callbacks.mask.points or []:
        ok = len(point) == 2 and all(isinstance(v, (int, float)) for v in point) and 0 <= point[0] <= 1 and 0 < point[1] < 1
        need(ok, f"callbacks.mask.points: {list(point)} must be [budget share in [0, 1], ratio in (0, 1)]")
    if cfg.model.name in CONFIGS:
        limit = CONFIGS[cfg.model.name].max_position
        row_length = cfg.data.row_length or cfg.data.sample.row_length
        need(row_length <= limit, f"row length {row_length} exceeds model {cfg.model.name}'s max_position {limit}")
    if problems:
        raise ValueError("invalid config:\n  " + "\n  ".join(problems))
