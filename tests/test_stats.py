"""Welch's t-test against values from statistical tables and from its definition."""

import math
import random

import pytest

from gptcore.experiments.stats import regularized_beta, t_two_sided_p, welch


@pytest.mark.parametrize("t, df, p", [
    (2.776445, 4, 0.05), (2.228139, 10, 0.05), (12.7062, 1, 0.05), (4.604095, 4, 0.01), (1.959964, 1e9, 0.05),
    (0.0, 5, 1.0), (1.0, 1, 0.5),  # t with 1 degree of freedom is Cauchy: P(|T| > 1) = 1/2
])
def test_two_sided_p_values_match_the_tables(t, df, p):
    assert t_two_sided_p(t, df) == pytest.approx(p, abs=2e-5)
    assert t_two_sided_p(-t, df) == pytest.approx(p, abs=2e-5)


def test_the_incomplete_beta_is_a_distribution_function():
    assert regularized_beta(2, 3, 0.0) == 0.0 and regularized_beta(2, 3, 1.0) == 1.0
    assert regularized_beta(1, 1, 0.3) == pytest.approx(0.3)  # uniform
    assert regularized_beta(2, 1, 0.5) == pytest.approx(0.25)  # x^2
    values = [regularized_beta(2.5, 0.5, x / 20) for x in range(21)]
    assert values == sorted(values)
    with pytest.raises(ValueError):
        regularized_beta(1, 1, 1.5)


def test_welch_on_a_hand_computed_example():
    a, b = [1.0, 2.0, 3.0], [4.0, 6.0, 8.0]  # means 2 and 6, variances 1 and 4
    r = welch(a, b)
    assert r.diff == -4.0 and r.stderr == pytest.approx(math.sqrt(1 / 3 + 4 / 3))
    assert r.df == pytest.approx((5 / 3) ** 2 / ((1 / 3) ** 2 / 2 + (4 / 3) ** 2 / 2))
    assert r.t == pytest.approx(-4.0 / math.sqrt(5 / 3))
    assert r.p_value == pytest.approx(t_two_sided_p(r.t, r.df))
    assert welch([1.0], [2.0, 3.0]) is None
    assert welch([1.0, 1.0], [1.0, 1.0]).p_value == 1.0 and welch([1.0, 1.0], [2.0, 2.0]).p_value == 0.0


def test_false_positives_are_about_alpha_under_the_null():
    rng = random.Random(0)
    trials = 4000
    hits = sum(welch([rng.gauss(0, 1) for _ in range(5)], [rng.gauss(0, 1) for _ in range(5)]).p_value < 0.05
               for _ in range(trials))
    assert 0.035 < hits / trials < 0.065


@pytest.mark.parametrize("df, t", [(1, 12.7062), (2, 4.302653), (4, 2.776445), (10, 2.228139), (1e9, 1.959964),
                                   (2.5, None)])
def test_the_critical_t_value_inverts_the_p_value(df, t):
    from gptcore.experiments.stats import t_critical

    found = t_critical(df)
    if t is not None:
        assert found == pytest.approx(t, abs=1e-4)  # the tables' two-sided 5% values
    assert t_two_sided_p(found, df) == pytest.approx(0.05, abs=1e-7)  # fractional degrees of freedom too
    assert t_critical(df, alpha=0.01) > found


def test_welch_gives_a_95_percent_interval_for_the_difference():
    a, b = [1.0, 2.0, 3.0], [4.0, 6.0, 8.0]
    r = welch(a, b)
    from gptcore.experiments.stats import t_critical

    half = t_critical(r.df) * r.stderr
    assert r.ci95 == pytest.approx((r.diff - half, r.diff + half))
    assert (r.ci95[1] < 0) == (r.p_value < 0.05)  # the interval excludes 0 exactly when the test rejects
    assert welch([1.0, 1.0], [2.0, 2.0]).ci95 == (-1.0, -1.0)
