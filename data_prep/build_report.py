"""What a shard build shows: a progress bar per language and one overall (tokens/s), and the summary table
printed at the end (per-language counts, packing efficiency, skipped input, languages without validation rows)."""
from __future__ import annotations

import time

from tqdm import tqdm


class Progress:
    """A bar per language and one overall, both with tokens/s."""

    def __init__(self, languages: int, enabled: bool) -> None:
        self.enabled = enabled
        self.overall = tqdm(total=languages, desc="languages", unit="lang", disable=not enabled, position=0)
        self.tokens = 0
        self.start = time.perf_counter()
        self.bars: dict[str, object] = {}

    def put(self, message: tuple[str, int]) -> None:
        label, tokens = message
        if label not in self.bars:
            self.bars[label] = tqdm(desc=label, unit="tok", unit_scale=True, leave=False, disable=not self.enabled)
        self.bars[label].update(tokens)
        self.tokens += tokens
        rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        self.overall.set_postfix_str(f"{self.tokens:,} tok, {rate:,.0f} tok/s", refresh=False)

    def done(self, label: str) -> None:
        bar = self.bars.pop(label, None)
        if bar is not None:
            bar.close()
        self.overall.update(1)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        for bar in self.bars.values():
            bar.close()
        self.overall.close()


def summary_table(manifest: dict) -> str:
    lines = [f"{'language':10s} {'docs':>7s} {'tokens':>11s} {'rows':>7s} {'val rows':>8s} {'packing':>8s} {'bad':>5s}"]
    full_tokens = full_slots = 0
    for label, e in sorted(manifest["languages"].items()):
        t = e["train"]
        lines.append(f"{label:10s} {t['docs'] + e['val']['docs']:7d} {t['tokens']:11,d} {t['rows']:7d} {e['val']['rows']:8d} "
                     f"{t['packing_efficiency']:8.2%} {sum(e['bad'].values()):5d}" + (f"  no val: {e['val_note']}" if "val_note" in e else ""))
        rows = t["rows"] - e.get("units", 1)         # each unit's final partial row is left out
        if rows > 0:
            full_slots += rows * manifest["row_length"]
            full_tokens += t["packing_efficiency"] * rows * manifest["row_length"]
    for label, why in sorted(manifest.get("empty", {}).items()):
        lines.append(f"{label:10s} not trained: {why}")
    overall = full_tokens / full_slots if full_slots else 1.0
    lines.append(f"overall packing efficiency (final partial row of each unit excluded): {overall:.2%}")
    bad = {}
    for e in manifest["languages"].values():
        for k, v in e["bad"].items():
            bad[k] = bad.get(k, 0) + v
    if any(bad.values()):
        lines.append("skipped input: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in bad.items() if v))
    if missing_val := sum("val_note" in e for e in manifest["languages"].values()):
        lines.append(f"{missing_val} language(s) have no validation rows (reason on their line)")
    return "\n".join(lines)
