"""`python -m mmbert_pl.plan [same overrides as run]`: see a run before paying for it.

No training: prints the schedules over the token budget and each segment's language shares and
epochs, and writes `<run_dir>/plan.png` (LR, mask ratio, τ, number of languages, global batch).
"""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from mmbert_pl.core.bad_input import exit_on_bad_input
from mmbert_pl.training.config_schema import register, validate

register()


def schedule_table(plan, points: int = 201) -> list[dict]:
    sched, geo, dm = plan.schedules, plan.geometry, plan.datamodule
    rows = []
    for i in range(points):
        tokens = geo.budget * i / (points - 1)
        rows.append({
            "tokens": tokens, "lr": sched.lr.lr(tokens), "mask_ratio": sched.mask.at(tokens),
            "temperature": sched.temperature.at(tokens), "languages": len(dm.segment_for(tokens).labels),
            "global_batch_tokens": sched.batch.at(tokens) * geo.tokens_per_round,
        })
    return rows


def write_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["lr", "mask_ratio", "temperature", "languages", "global_batch_tokens"]
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 10), sharex=True)
    x = [r["tokens"] for r in rows]
    for ax, key in zip(axes, keys):
        ax.plot(x, [r[key] for r in rows], drawstyle="steps-post" if key in ("temperature", "languages") else "default")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("tokens")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="config")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input():
        validate(cfg)
        from mmbert_pl.run_plan import plan_run

        plan = plan_run(cfg)
    geo = plan.geometry
    print(f"{cfg.experiment}: model {cfg.model.name}, {geo.budget:,.0f} tokens = {geo.max_steps:,} optimizer steps of "
          f"{geo.rows_per_step} rows x {geo.row_length} ({geo.accumulate} micro-batches of {geo.micro_batch} on {geo.devices} devices)")
    if left_out := plan.datamodule.left_out():
        print(left_out)
    rows = schedule_table(plan)
    print(f"{'share':>6s} {'tokens':>18s} {'lr':>10s} {'mask':>6s} {'τ':>5s} {'langs':>6s} {'batch tokens':>13s}")
    for r in rows[:: len(rows) // 10]:
        print(f"{r['tokens'] / geo.budget:6.0%} {r['tokens']:18,.0f} {r['lr']:10.3e} {r['mask_ratio']:6.3f} "
              f"{r['temperature']:5.2f} {r['languages']:6d} {r['global_batch_tokens']:13,d}")
    for seg in plan.datamodule.segments:
        print(f"\nsegment {seg.start:,}-{seg.end:,} tokens: {seg.set_name} ({len(seg.labels)} languages), τ={seg.temperature}")
        print(seg.mixture.table())
    out = Path(cfg.run_dir) / "plan.png"
    write_plot(rows, out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    from data_prep.quick_exit import freeze_at_exit

    freeze_at_exit()
    main()
