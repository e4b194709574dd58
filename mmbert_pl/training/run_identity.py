"""What a run is: every model and recipe setting that changes the numbers it trains. A resumed run must match
its first launch in all of them (the data mixture has its own hash, `mixture.json`); the settings that only
change how it runs (workers, logger, checkpoint cadence, attention backend, compile) may change."""
from __future__ import annotations

from omegaconf import DictConfig


def run_settings(cfg: DictConfig, plan) -> dict:
    """Flat {dotted key: value}, from the resolved plan (shares of the budget already turned into tokens)."""
    s = plan.schedules
    nested = {
        "model": {k: v for k, v in plan.model.to_dict().items()},
        "optimizer": {"lr": cfg.optimizer.lr, "betas": list(cfg.optimizer.betas), "eps": cfg.optimizer.eps,
                      "weight_decay": cfg.optimizer.weight_decay},
        "lr_schedule": {"peak": s.lr.peak, "warmup_tokens": s.lr.t_warmup, "decay_tokens": s.lr.t_decay,
                        "budget_tokens": s.lr.t_max, "alpha_f": s.lr.alpha_f, "shape": s.lr.shape},
        "mask": {"points": [list(p) for p in s.mask.points], "mode": s.mask.mode, "val_mask_ratio": cfg.val_mask_ratio},
        # The batch in rows, not in micro-batches: processes, micro-batch and accumulation may change on resume.
        "batch": {"global_rows": plan.geometry.rows_per_step,
                  **({"warmup_round_rows": s.batch.round_rows, "warmup_min_rounds": s.batch.k_min, "warmup_tokens": s.batch.warmup_tokens}
                     if plan.geometry.warmup_active else {})},
        "seed": cfg.seed,
        "init_from": cfg.init_from,
        "init_weights_only": cfg.init_weights_only,
    }
    return dict(flatten(nested))


def flatten(value, prefix: str = ""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flatten(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], value


def changed_settings(first: dict, now: dict) -> list[str]:
    """'key: first -> now' for every setting that differs (a key only one side has counts as changed)."""
    return [f"{k}: {first.get(k, '(unset)')} -> {now.get(k, '(unset)')}" for k in sorted(set(first) | set(now))
            if first.get(k) != now.get(k)]


OLD_BATCH = ("batch_warmup.min_accumulate", "batch_warmup.accumulate", "batch_warmup.tokens")


def upgraded(first: dict, now: dict, accumulate: int) -> dict:
    """A settings.json written before the batch was recorded in rows (`batch_warmup.*`, in micro-batches of the
    layout it ran on): resumed with the same accumulation and warmup, it is the same batch, and its keys become
    today's. Otherwise the old keys stay, and the resume is refused naming them."""
    if "batch_warmup.accumulate" not in first:
        return first
    same = (first["batch_warmup.accumulate"] == accumulate
            and first["batch_warmup.tokens"] == now.get("batch.warmup_tokens", 0.0)
            and first["batch_warmup.min_accumulate"] == now.get("batch.warmup_min_rounds", first["batch_warmup.min_accumulate"]))
    if not same:
        return first
    return {**{k: v for k, v in first.items() if k not in OLD_BATCH}, **{k: v for k, v in now.items() if k.startswith("batch.")}}
