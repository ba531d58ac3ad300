"""Paired t-test on per-pair differences (e.g. per-seed metric of method A minus method B)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from lorascope.stats._arrays import as_sample, check_alternative, is_constant, unit_scaled
from lorascope.stats.result import Alternative, TestResult


def paired_t_test(deltas: Any, *, alternative: Alternative = "two-sided", null: float = 0.0) -> TestResult:
    """One-sample t-test of the mean paired difference against ``null`` (== scipy ``ttest_rel``).

    Relies on the mean difference being roughly normal; with a handful of seeds that cannot be
    checked, so report it beside the exact sign-flip test rather than instead of it.

    Args:
        deltas: float array [n], paired differences a_i − b_i.
        alternative: "two-sided", "greater" (mean > null) or "less" (mean < null).
        null: the mean difference under the null hypothesis.

    Returns:
        TestResult with statistic = t and df = n − 1 in the test name. If the differences have zero
        variance, t is undefined: statistic and p_value are NaN and ``note`` says why (scipy would
        report t = ±inf, p = 0 for a constant non-zero difference, which overstates the evidence).

    Raises:
        LorascopeError: n < 2, NaN/inf, or an unknown alternative.
    """
    check_alternative(alternative)
    d = as_sample(deltas, "deltas", min_n=2) - null
    n = int(d.shape[0])
    name = f"paired t-test (df={n - 1})"
    if is_constant(d):
        return TestResult(
            test=name, n=n, statistic=float("nan"), p_value=float("nan"), alternative=alternative,
            note="all differences are equal (zero variance): the t statistic is undefined",
        )
    # t is scale-free: rescaled, differences of 1e-200 or 1e200 do not under- or overflow in the variance.
    res = stats.ttest_1samp(unit_scaled(d)[0], 0.0, alternative=alternative)
    return TestResult(
        test=name, n=n, statistic=float(res.statistic), p_value=float(res.pvalue), alternative=alternative
    )


def t_interval(deltas: Any, *, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided t confidence interval for the mean paired difference.

    Args:
        deltas: float array [n], n ≥ 2.
        confidence: coverage, in (0, 1).

    Returns:
        (low, high); (mean, mean) when the differences have zero variance.
    """
    d = as_sample(deltas, "deltas", min_n=2)
    mean = float(d.mean())
    if is_constant(d):
        return mean, mean
    scaled, e = unit_scaled(d)  # the sd of tiny or huge differences, without under- or overflow
    half = float(np.ldexp(stats.t.ppf(0.5 + confidence / 2, d.shape[0] - 1) * scaled.std(ddof=1) / np.sqrt(d.shape[0]), e))
    return mean - half, mean + half
