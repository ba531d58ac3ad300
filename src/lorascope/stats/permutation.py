"""Paired sign-flip permutation test: exact by enumeration for small n, Monte-Carlo beyond.

Under the null that each paired difference is symmetric about zero (e.g. "the method label does
not matter within a seed"), every sign pattern of the differences is equally likely. The p-value
is the share of the 2^n patterns whose mean is at least as extreme as the observed one. No
normality assumption; the price is a floor on p: with n pairs the smallest two-sided p is 2/2^n
(0.25 for n = 3), so a small study can be unable to reach significance whatever its data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.stats._arrays import as_sample, check_alternative
from lorascope.stats.result import Alternative, TestResult

# Differences this small relative to the largest are zeros: they carry no sign information.
_ZERO_RTOL = 1e-12
# Sums within this fraction of Σ|d| count as ties, so rounding never drops the observed pattern.
_TIE_RTOL = 1e-10
_MC_CHUNK = 8192


def min_attainable_p(n_nonzero: int, alternative: str) -> float:
    """Smallest p the exact sign-flip test can give with n non-zero differences.

    Only the observed all-same-sign pattern (and, two-sided, its mirror) reaches the largest
    |mean|, because any flip of a non-zero difference lowers it. Zero differences add nothing.

    Args:
        n_nonzero: number of non-zero differences.
        alternative: "two-sided", "greater" or "less".
    """
    if n_nonzero == 0:
        return 1.0
    return float(2.0 ** (-n_nonzero) * (2 if alternative == "two-sided" else 1))


def _tail_share(null_sums: np.ndarray, observed: float, alternative: str, tol: float) -> tuple[int, int]:
    """(count of null sums at least as extreme as observed, number of null sums)."""
    if alternative == "greater":
        hits = np.count_nonzero(null_sums >= observed - tol)
    elif alternative == "less":
        hits = np.count_nonzero(null_sums <= observed + tol)
    else:
        hits = np.count_nonzero(np.abs(null_sums) >= abs(observed) - tol)
    return int(hits), int(null_sums.shape[0])


def _all_sign_sums(magnitudes: np.ndarray) -> np.ndarray:
    """Σ s_i m_i for all 2^k sign vectors s, built by doubling (O(2^k) memory and time)."""
    sums = np.zeros(1)
    for m in magnitudes:
        sums = np.concatenate((sums + m, sums - m))
    return sums


def sign_flip_test(
    deltas: Any,
    *,
    alternative: Alternative = "two-sided",
    null: float = 0.0,
    max_exact: int = 2**20,
    n_resamples: int = 100_000,
    seed: int = 0,
) -> TestResult:
    """Sign-flip permutation test of the mean paired difference against ``null``.

    Args:
        deltas: float array [n], paired differences a_i − b_i.
        alternative: "two-sided" (|mean| extreme), "greater" (mean > null), "less" (mean < null).
        null: value subtracted from every difference first (e.g. a margin for a shifted null).
        max_exact: enumerate all 2^k sign patterns (k = number of non-zero differences) when
            2^k ≤ max_exact; otherwise draw ``n_resamples`` random patterns.
        n_resamples: Monte-Carlo draws m; p = (b + 1) / (m + 1), b = draws at least as extreme,
            which counts the observed pattern once and never returns 0.
        seed: seed of the Monte-Carlo draws.

    Returns:
        TestResult with statistic = mean(deltas) − null, the exact or Monte-Carlo p, and
        min_attainable_p (exact: 2^(1−k) two-sided, 2^(−k) one-sided; Monte-Carlo: also at least
        1/(m+1)).

    Raises:
        LorascopeError: n < 1, NaN/inf, unknown alternative, or max_exact/n_resamples < 1.
    """
    check_alternative(alternative)
    if max_exact < 1 or n_resamples < 1:
        raise LorascopeError(f"max_exact and n_resamples must be positive; got {max_exact} and {n_resamples}")
    d = as_sample(deltas, "deltas", min_n=1) - null
    n = int(d.shape[0])
    scale = float(np.max(np.abs(d)))
    nonzero = d[np.abs(d) > _ZERO_RTOL * scale] if scale > 0 else d[:0]
    k = int(nonzero.shape[0])
    statistic = float(d.mean())
    floor = min_attainable_p(k, alternative)
    zeros_note = f"{n - k} zero difference(s) carry no sign information; " if k < n else ""
    if k == 0:
        return TestResult(
            test="sign-flip permutation (exact)", n=n, statistic=statistic, p_value=1.0,
            alternative=alternative, min_attainable_p=1.0,
            note="all differences are zero: no evidence either way",
        )
    observed = float(nonzero.sum())
    mags = np.abs(nonzero)
    tol = _TIE_RTOL * float(mags.sum())
    if 2.0**k <= max_exact:
        hits, total = _tail_share(_all_sign_sums(mags), observed, alternative, tol)
        return TestResult(
            test="sign-flip permutation (exact)", n=n, statistic=statistic, p_value=hits / total,
            alternative=alternative, min_attainable_p=floor,
            note=f"{zeros_note}enumerated all 2^{k} sign patterns".strip(),
        )
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_resamples, _MC_CHUNK):
        m = min(_MC_CHUNK, n_resamples - start)
        signs = rng.integers(0, 2, size=(m, k), dtype=np.int8) * 2 - 1
        h, _ = _tail_share(signs @ mags, observed, alternative, tol)
        hits += h
    return TestResult(
        test="sign-flip permutation (Monte Carlo)", n=n, statistic=statistic,
        p_value=(hits + 1) / (n_resamples + 1), alternative=alternative,
        min_attainable_p=max(floor, 1.0 / (n_resamples + 1)), n_resamples=n_resamples,
        note=f"{zeros_note}2^{k} patterns exceed max_exact={max_exact}; p = (b+1)/(m+1)",
    )
