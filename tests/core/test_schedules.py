"""Each schedule against its formula at many points, boundaries included."""
import math

import pytest

from callbacks.lr import LRSchedule
from mmbert_pl.core.schedules import lr_factor
from callbacks.mask_ratio import MaskRatioSchedule
from mmbert_pl.core.schedules import mask_ratio_at

W, T, D, A = 3e9, 100e9, 40e9, 0.02


@pytest.mark.parametrize("tokens", [0, 1, 1.5e9, 3e9 - 1])
def test_warmup_is_linear_from_zero(tokens: float) -> None:
    assert lr_factor(tokens, W, T, D, A) == pytest.approx(1e-10 + (1 - 1e-10) * tokens / W, abs=1e-12)


@pytest.mark.parametrize("tokens", [3e9, 30e9, 60e9 - 1])
def test_stable_until_the_decay_starts(tokens: float) -> None:
    assert lr_factor(tokens, W, T, D, A) == 1.0


@pytest.mark.parametrize("x", [0.0, 0.01, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize(
    "shape,formula",
    [
        ("1-sqrt", lambda x: A + (1 - A) * (1 - math.sqrt(x))),
        ("linear", lambda x: A + (1 - A) * (1 - x)),
        ("cosine", lambda x: A + (1 - A) * 0.5 * (1 + math.cos(math.pi * x))),
        ("inverse_sqrt", lambda x: 1 / math.sqrt(1 + (A**-2 - 1) * x)),
    ],
)
def test_decay_shapes(shape: str, formula, x: float) -> None:
    tokens = T - D + x * D
    assert lr_factor(tokens, W, T, D, A, shape) == pytest.approx(formula(x), rel=1e-12)
    assert lr_factor(T + 5e9, W, T, D, A, shape) == pytest.approx(A)          # held at alpha_f after t_max


def test_mmbert_decay_stage() -> None:
    """Decay stage of mmBERT-base: 100B tokens of 1-sqrt from 8e-4 to 1.6e-5 (recipe §5)."""
    s = LRSchedule(peak=8e-4, t_warmup=0, t_max=100e9, t_decay=100e9, alpha_f=0.02)
    assert s.lr(0) == pytest.approx(8e-4)
    assert s.lr(25e9) == pytest.approx(8e-4 * (0.02 + 0.98 * 0.5))
    assert s.lr(100e9) == pytest.approx(1.6e-5)
    with pytest.raises(ValueError, match="t_decay"):
        LRSchedule(peak=8e-4, t_warmup=0, t_max=10, t_decay=20)
    with pytest.raises(ValueError, match="decay shape"):
        LRSchedule(peak=8e-4, t_warmup=0, t_max=10, shape="exp")


def test_mask_ratio_points() -> None:
    pts = [(0, 0.3), (100, 0.15), (200, 0.05)]
    assert [mask_ratio_at(t, pts) for t in (0, 50, 100, 150, 200, 500)] == pytest.approx([0.3, 0.225, 0.15, 0.1, 0.05, 0.05])
    assert [mask_ratio_at(t, pts, "steps") for t in (0, 99, 100, 199, 200)] == [0.3, 0.3, 0.15, 0.15, 0.05]
    assert MaskRatioSchedule(0.3).points == [(0.0, 0.3)]
    with pytest.raises(ValueError, match="ratios in"):
        MaskRatioSchedule([(0, 0.3), (0, 0.2)])
    with pytest.raises(ValueError, match="ratios in"):
        MaskRatioSchedule(1.2)


def test_batch_warmup_gives_every_size_the_same_number_of_steps() -> None:
    from mmbert_pl.core.schedules import accumulation_at
    from mmbert_pl.training.batch_geometry import steps_for

    k_min, k_max, warmup, per_round = 1, 12, 60e9, 8 * 48 * 1024      # mmBERT-base on 8 GPUs: 48-row micro-batches
    tokens, steps_at = 0.0, {}
    while tokens < warmup:
        k = accumulation_at(tokens, k_min, k_max, warmup)
        steps_at[k] = steps_at.get(k, 0) + 1
        tokens += k * per_round
    assert sorted(steps_at) == list(range(1, 12))
    assert max(steps_at.values()) - min(steps_at.values()) <= 1
    assert 2300 <= steps_at[5] <= 2330                                  # ≈ 2,312 steps per size (recipe §5)
    assert accumulation_at(warmup, k_min, k_max, warmup) == k_max and accumulation_at(0, k_min, k_max, 0) == k_max
    total = steps_for(2.3e12, per_round, k_max, warmup, k_min)
    assert total == sum(steps_at.values()) + -(-(2.3e12 - tokens) // (k_max * per_round))


def test_checkpoint_cadence_in_tokens_is_whole_full_batch_steps() -> None:
    from mmbert_pl.training.batch_geometry import BatchGeometry

    geo = BatchGeometry(row_length=1024, micro_batch=8, accumulate=4, devices=2, budget=1e9, max_steps=100, round_rows=16)
    assert geo.tokens_per_step == 65536
    assert geo.steps_for_tokens(65536 * 10) == 10
    assert geo.steps_for_tokens(65536 * 10.4) == 10 and geo.steps_for_tokens(1) == 1
