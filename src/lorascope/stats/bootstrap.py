"""Bootstrap confidence interval of a statistic of one sample or of paired samples (scipy)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

from lorascope.errors import LorascopeError
from lorascope.stats._arrays import as_sample, is_constant
from lorascope.stats.result import json_number

Method = Literal["BCa", "percentile", "basic"]


@dataclass(frozen=True)
class ConfidenceInterval:
    """A bootstrap interval and how it was made.

    Attributes:
        estimate: the statistic on the original data.
        low: lower bound.
        high: upper bound.
        confidence: nominal coverage, e.g. 0.95.
        method: "BCa", "percentile" or "basic".
        n: observations (pairs) resampled.
        n_resamples: bootstrap resamples.
        note: caveats (degenerate data, small n); empty when none.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: int
    n_resamples: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; NaN and inf become None."""
        return {k: json_number(v) for k, v in asdict(self).items()}


def _mean(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.mean(samples[0], axis=axis))


def bootstrap_ci(
    data: Any,
    *more: Any,
    statistic: Callable[..., Any] = _mean,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    method: Method = "BCa",
    seed: int = 0,
) -> ConfidenceInterval:
    """Bootstrap confidence interval via ``scipy.stats.bootstrap``.

    With several samples they are resampled together as pairs (``paired=True``): pass per-seed
    arrays of two methods and a statistic of both, e.g. a ratio of means.

    Args:
        data: float array [n].
        *more: further float arrays [n], paired with ``data`` by position.
        statistic: vectorised function ``f(*samples, axis=-1)``; the mean of ``data`` by default.
        confidence: coverage in (0, 1).
        n_resamples: bootstrap resamples.
        method: "BCa" (default; corrects bias and skew), "percentile" or "basic".
        seed: seed of the resampling.

    Returns:
        ConfidenceInterval. When every sample is constant the bootstrap distribution is one point:
        the interval is [estimate, estimate] and ``note`` says so (scipy would give NaN for BCa).

    Raises:
        LorascopeError: n < 2, unequal lengths, NaN/inf, or a bad confidence/method.
    """
    if not 0.0 < confidence < 1.0:
        raise LorascopeError(f"confidence must be in (0, 1); got {confidence}")
    if method not in ("BCa", "percentile", "basic"):
        raise LorascopeError(f"method must be 'BCa', 'percentile' or 'basic'; got {method!r}")
    if n_resamples < 1:
        raise LorascopeError(f"n_resamples must be positive; got {n_resamples}")
    samples = [as_sample(data, "data", min_n=2)]
    samples += [as_sample(m, f"sample {i + 2}", min_n=2) for i, m in enumerate(more)]
    n = samples[0].shape[0]
    if any(s.shape[0] != n for s in samples):
        raise LorascopeError(f"paired samples must have the same length; got {[s.shape[0] for s in samples]}")
    estimate = float(statistic(*samples, axis=-1))
    notes = []
    if n < 10:
        # The bootstrap treats the n observed values as the population; with a few seeds it
        # cannot see the spread it has not sampled, so intervals come out too narrow.
        notes.append(f"n={n} is small: bootstrap intervals undercover")
    if all(is_constant(s) for s in samples):
        notes.append("all values equal: the bootstrap distribution is a single point")
        note = "; ".join(notes)
        return ConfidenceInterval(estimate, estimate, estimate, confidence, method, n, n_resamples, note)
    with warnings.catch_warnings():
        # scipy warns (and returns NaN) for BCa on degenerate resamples; NaN is reported below.
        warnings.simplefilter("ignore", category=stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        res = stats.bootstrap(
            tuple(samples), statistic, n_resamples=n_resamples, paired=len(samples) > 1, vectorized=True,
            confidence_level=confidence, method=method, rng=np.random.default_rng(seed),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    dist = np.asarray(res.bootstrap_distribution)
    if float(np.ptp(dist)) <= 1e-12 * max(float(np.max(np.abs(dist))), 1e-300):
        # e.g. a ratio statistic on exactly proportional pairs: every resample gives the estimate.
        notes.append("the statistic is the same on every resample: the bootstrap distribution is a single point")
        low = high = estimate
    elif not (np.isfinite(low) and np.isfinite(high)):
        # BCa's acceleration is undefined when the jackknife values are all equal.
        notes.append(f"{method} interval undefined for these data; percentile interval reported instead")
        method = "percentile"
        tail = (1.0 - confidence) / 2.0
        low, high = (float(v) for v in np.quantile(dist, [tail, 1.0 - tail]))
    return ConfidenceInterval(estimate, low, high, confidence, method, n, n_resamples, "; ".join(notes))
