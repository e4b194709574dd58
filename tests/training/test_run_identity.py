"""A run's identity across versions: settings.json written before the batch was recorded in rows."""
from mmbert_pl.training.run_identity import changed_settings, upgraded

OLD = {"seed": 21, "batch_warmup.min_accumulate": 1, "batch_warmup.accumulate": 2, "batch_warmup.tokens": 0.0}
NOW = {"seed": 21, "batch.global_rows": 16}


def test_an_older_run_resumed_on_its_layout_is_the_same_run() -> None:
    assert changed_settings(upgraded(dict(OLD), NOW, accumulate=2), NOW) == []


def test_an_older_run_on_another_accumulation_or_warmup_is_refused_naming_its_keys() -> None:
    assert "batch_warmup.accumulate: 2 -> (unset)" in changed_settings(upgraded(dict(OLD), NOW, accumulate=1), NOW)
    warm = {**NOW, "batch.warmup_round_rows": 8, "batch.warmup_min_rounds": 1, "batch.warmup_tokens": 1000.0}
    assert changed_settings(upgraded(dict(OLD), warm, accumulate=2), warm) != []
    assert upgraded(dict(NOW), NOW, accumulate=2) == NOW          # today's files pass as they are
