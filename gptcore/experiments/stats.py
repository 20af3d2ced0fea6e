"""Welch's t-test, written out: is the difference between two arms' mean losses more than seed noise?

Two arms with a few seeds each, variances not assumed equal: t = (mean_a - mean_b) / sqrt(s_a²/n_a + s_b²/n_b)
with the Welch-Satterthwaite degrees of freedom, and the two-sided p-value from Student's t distribution,
P(|T| > |t|) = I_x(df/2, 1/2) with x = df / (df + t²), where I is the regularized incomplete beta function
(evaluated by its continued fraction, the standard way). No statistics library is needed for this one test.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

ALPHA = 0.05  # two-sided significance level of the verdicts


@dataclass(frozen=True)
class WelchResult:
    diff: float  # mean_a - mean_b
    stderr: float
    t: float
    df: float
    p_value: float
    ci95: tuple[float, float]  # the 95% confidence interval of diff: diff ± t_critical(df) · stderr


def _beta_continued_fraction(a: float, b: float, x: float, iterations: int = 300, eps: float = 1e-15) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iterations + 1):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast here; else use the symmetry
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    return regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def t_critical(df: float, alpha: float = ALPHA) -> float:
    """The t with P(|T| >= t) = ``alpha`` for Student's t with ``df`` degrees of freedom (4.30 for df 2,
    1.96 as df grows): the inverse of :func:`t_two_sided_p`, by bisection, since the p-value falls as t grows."""
    low, high = 0.0, 1.0
    while t_two_sided_p(high, df) > alpha:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_two_sided_p(middle, df) > alpha:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * high:
            break
    return (low + high) / 2.0


def welch(a: list[float], b: list[float]) -> WelchResult | None:
    """Welch's t-test of mean(a) - mean(b); None with fewer than two values in either sample."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    stderr = math.sqrt(va + vb)
    if stderr == 0.0:  # identical runs within each arm: any difference is exact, none is no difference
        return WelchResult(diff, 0.0, math.copysign(math.inf, diff) if diff else 0.0, math.inf,
                           0.0 if diff else 1.0, (diff, diff))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = diff / stderr
    half = t_critical(df) * stderr
    return WelchResult(diff, stderr, t, df, t_two_sided_p(t, df), (diff - half, diff + half))
