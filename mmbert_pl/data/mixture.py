"""Language mixture of one data segment: p_i ∝ n_i^τ, then no language drawn more than `max_epochs`
times its tokens within the segment's budget (recipe §7); capped mass goes to the others, ∝ n_i^τ.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mixture:
    tokens: dict[str, int]          # available (training) tokens per language
    shares: dict[str, float]        # sampling share per language, sums to 1
    budget: float                   # tokens drawn in the segment

    def epochs(self, label: str) -> float:
        return self.shares[label] * self.budget / self.tokens[label]

    def table(self) -> str:
        lines = [f"{'language':10s} {'tokens':>12s} {'share':>8s} {'epochs':>8s}"]
        for label in sorted(self.shares, key=lambda k: -self.shares[k]):
            lines.append(f"{label:10s} {self.tokens[label]:12,d} {self.shares[label]:8.2%} {self.epochs(label):8.2f}")
        return "\n".join(lines)


def temperature_mixture(tokens: dict[str, int], temperature: float, budget: float, max_epochs: float = 5.0,
                        boost: dict[str, float] | None = None) -> Mixture:
    """`boost` multiplies chosen languages' n^τ weights (e.g. English in an English-focused decay)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if budget <= 0:
        raise ValueError(f"budget must be > 0 tokens, got {budget}")
    empty = sorted(k for k, n in tokens.items() if n <= 0)
    if empty or not tokens:
        raise ValueError(f"languages with no training tokens: {empty or 'none given'}; drop them from the language set")
    total = sum(tokens.values())
    if budget > max_epochs * total:
        raise ValueError(f"a budget of {budget:,.0f} tokens exceeds {max_epochs} epochs of all {total:,} tokens; "
                         f"add data, lower the budget or raise the epoch cap")
    boost = boost or {}
    weights = {k: n**temperature * boost.get(k, 1.0) for k, n in tokens.items()}
    capped: dict[str, float] = {}
    while True:
        free = {k: w for k, w in weights.items() if k not in capped}
        left = 1.0 - sum(capped.values())
        norm = sum(free.values())
        shares = {k: left * w / norm for k, w in free.items()}
        over = {k for k, s in shares.items() if s * budget > max_epochs * tokens[k] * (1 + 1e-12)}
        if not over:
            break
        for k in over:
            capped[k] = max_epochs * tokens[k] / budget
    shares.update(capped)
    return Mixture(tokens=dict(tokens), shares=shares, budget=budget)
