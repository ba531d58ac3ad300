"""Fieller confidence interval for a ratio of two paired means.

The interval is the set of ratios ρ for which a paired t-test of mean(a − ρ b) = 0 does not
reject, so it agrees with t-tests of shifted nulls such as mean(0.8 b − a) > 0, where a
bootstrap of a ratio with a few seeds would not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from lorascope.errors import LorascopeError
from lorascope.stats._arrays import as_sample


def fieller_interval(a: Any, b: Any, *, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval for mean(a) / mean(b), a and b paired by position.

    Solves (m_a − ρ m_b)² ≤ t² · var(a − ρ b) / n for ρ, with t the two-sided Student quantile
    on n − 1 degrees of freedom.

    Args:
        a: float array [n], numerator sample (e.g. per-seed LoRA drift).
        b: float array [n], denominator sample (e.g. per-seed full fine-tuning drift).
        confidence: coverage in (0, 1).

    Returns:
        (low, high). (-inf, inf) when mean(b) is not significantly different from zero at this
        level: the data then bound no ratio.

    Raises:
        LorascopeError: n < 2, unequal lengths, NaN/inf.
    """
    x = as_sample(a, "a", min_n=2)
    y = as_sample(b, "b", min_n=2)
    if x.shape != y.shape:
        raise LorascopeError(f"a and b must be paired (same length); got {x.shape[0]} and {y.shape[0]}")
    n = x.shape[0]
    t2 = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) ** 2 / n
    ma, mb = float(x.mean()), float(y.mean())
    cov = np.cov(x, y, ddof=1)
    saa, sab, sbb = float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1])
    qa = mb * mb - t2 * sbb
    qb = -2.0 * (ma * mb - t2 * sab)
    qc = ma * ma - t2 * saa
    if qa <= 0.0:
        return float("-inf"), float("inf")
    disc = qb * qb - 4.0 * qa * qc
    # disc < 0 only through rounding when qa > 0 (the ratio of means always satisfies the inequality).
    root = np.sqrt(max(disc, 0.0))
    return (-qb - root) / (2.0 * qa), (-qb + root) / (2.0 * qa)
