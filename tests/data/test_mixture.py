import pytest

from mmbert_pl.data.mixture import temperature_mixture

TOKENS = {"eng": 1_000_000, "deu": 200_000, "fao": 5_000, "tir": 1_000}


def test_temperature_one_gives_token_proportions() -> None:
    m = temperature_mixture(TOKENS, 1.0, budget=100_000)
    total = sum(TOKENS.values())
    for k, n in TOKENS.items():
        assert m.shares[k] == pytest.approx(n / total)


def test_small_temperature_approaches_uniform() -> None:
    m = temperature_mixture(TOKENS, 0.01, budget=10_000)
    assert max(m.shares.values()) - min(m.shares.values()) < 0.05
    assert sum(m.shares.values()) == pytest.approx(1.0)


def test_epoch_cap_holds_and_mass_is_redistributed() -> None:
    budget = 1_000_000
    m = temperature_mixture(TOKENS, 0.3, budget=budget, max_epochs=5)
    uncapped = temperature_mixture(TOKENS, 0.3, budget=1, max_epochs=5)
    assert uncapped.shares["tir"] * budget > 5 * TOKENS["tir"]           # the cap is needed here
    assert m.epochs("tir") == pytest.approx(5.0) and m.epochs("fao") <= 5.0 + 1e-9
    assert sum(m.shares.values()) == pytest.approx(1.0)
    # The freed mass goes to the uncapped languages in their n^τ ratio.
    assert m.shares["eng"] / m.shares["deu"] == pytest.approx((1_000_000 / 200_000) ** 0.3)
    assert "tir" in m.table()


def test_infeasible_budgets_and_empty_languages_are_errors() -> None:
    with pytest.raises(ValueError, match="exceeds 5"):
        temperature_mixture(TOKENS, 0.3, budget=6 * sum(TOKENS.values()))
    with pytest.raises(ValueError, match="no training tokens"):
        temperature_mixture({**TOKENS, "xyz": 0}, 0.3, budget=10)
    with pytest.raises(ValueError, match="temperature"):
        temperature_mixture(TOKENS, 0.0, budget=10)


def test_boost_raises_one_language_in_its_ratio() -> None:
    plain = temperature_mixture(TOKENS, 0.3, budget=1000)
    boosted = temperature_mixture(TOKENS, 0.3, budget=1000, boost={"eng": 1.5})
    ratio = lambda m: m.shares["eng"] / m.shares["deu"]
    assert ratio(boosted) == pytest.approx(1.5 * ratio(plain))
