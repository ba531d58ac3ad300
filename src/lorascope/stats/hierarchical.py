"""One interval over seeds *and* samples: a two-level bootstrap, calibrated with Student's t.

A drift estimate varies with the training seed and with the dev samples it is measured on. The
seed-level t interval sees only the first; a per-run bootstrap over samples only the second. Here
each replicate resamples seeds with replacement, then one bootstrap resample of the samples. The
samples are *the same set* for every run (crossed with seeds, not nested in them), so one sample
resample is shared by every seed in a replicate: drawing one per seed would average the sample
noise away and understate it.

With k seeds, a percentile interval of a seed-resampling bootstrap covers far less than nominal
(about 75% for a "95%" interval at k = 3, see :func:`plain_bootstrap_coverage`: the k observed values are treated
as the population).
The interval is therefore estimate ± t_{k−1} · sqrt(k / (k − 1)) · se_boot: the factor undoes the
bootstrap's (k − 1)/k variance shrinkage and t_{k−1} its small-k tails, so with negligible sample
noise it is exactly the Student t interval, and sample noise only widens it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from lorascope.errors import LorascopeError
from lorascope.stats.bootstrap import ConfidenceInterval

METHOD = "hierarchical bootstrap (seeds, then samples), t-calibrated"


def _deviations(replicates: np.ndarray, k: int) -> np.ndarray:
    """Per-seed sample-bootstrap replicates minus their own mean: the sample noise alone.

    Centring discards the replicates' offset (biased CKA replicates sit above the estimate, an
    artefact of duplicated samples) and keeps their spread.
    """
    reps = np.asarray(replicates, dtype=np.float64)
    if reps.ndim != 2 or reps.shape[0] != k:
        raise LorascopeError(f"replicates must be [k={k}, B]; got shape {reps.shape}")
    return np.asarray(reps - np.nanmean(reps, axis=1, keepdims=True))


def hierarchical_interval(
    estimates: Sequence[Any],
    replicates: Sequence[Any] | None,
    statistic: Callable[..., np.ndarray] = lambda x: x,
    *,
    confidence: float = 0.95,
    n_resamples: int = 4000,
    seed: int = 0,
) -> ConfidenceInterval:
    """Interval for ``statistic(mean over seeds of quantity 1, quantity 2, ...)``.

    Args:
        estimates: one float array [k] per quantity (e.g. LoRA drift per seed, full drift per
            seed), paired by seed position.
        replicates: one float array [k, B] per quantity: bootstrap-over-samples replicates of each
            seed's estimate, replicate b using the same sample resample for every seed and
            quantity. None: seeds only.
        statistic: vectorised function of the per-quantity means (arrays [R]) -> [R].
        confidence: nominal coverage.
        n_resamples: hierarchical replicates R.
        seed: seed of the resampling.

    Returns:
        ConfidenceInterval centred on the estimate; ``note`` counts replicates dropped as NaN
        (e.g. a debiased CKA undefined on a degenerate resample).

    Raises:
        LorascopeError: fewer than 2 seeds, mismatched shapes, NaN estimates.
    """
    est = [np.asarray(e, dtype=np.float64) for e in estimates]
    k = est[0].shape[0]
    if k < 2 or any(e.shape != (k,) for e in est):
        raise LorascopeError(f"need at least 2 seeds, and one value per seed for every quantity; got {[e.shape for e in est]}")
    if not all(np.isfinite(e).all() for e in est):
        raise LorascopeError("per-seed estimates must be finite")
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, k, size=(n_resamples, k))
    means = [e[seeds].mean(axis=1) for e in est]  # [R] per quantity
    note = ""
    if replicates is not None:
        devs = [_deviations(r, k) for r in replicates]
        n_boot = devs[0].shape[1]
        cols = rng.integers(0, n_boot, size=n_resamples)
        noise = [d[seeds, cols[:, None]].mean(axis=1) for d in devs]  # shared sample resample per replicate
        means = [m + z for m, z in zip(means, noise)]
    values = np.asarray(statistic(*means), dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        note = f"{int((~finite).sum())} of {n_resamples} replicates undefined (NaN) and dropped"
    estimate = float(statistic(*[np.array([e.mean()]) for e in est])[0])
    se = float(np.std(values[finite], ddof=1)) if finite.sum() > 1 else float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, k - 1)) * np.sqrt(k / (k - 1)) * se
    return ConfidenceInterval(estimate, estimate - half, estimate + half, confidence, METHOD, k, n_resamples, note)


def plain_bootstrap_coverage(k: int, confidence: float = 0.95) -> float:
    """Coverage of the interval this module does *not* use: a plain percentile bootstrap over ``k`` seeds.

    Resampling k seeds treats them as the population, so the interval is about x̄ ± z·s·√((k−1)/k)/√k
    and, for normal per-seed values, covers the mean with probability P(|t_{k−1}| < z·√((k−1)/k)).
    At k = 2 the interval is the two values themselves, which cover any symmetric distribution's
    centre exactly half the time: 0.5 is returned. From k = 3 a simulation lies within 2 points of the
    formula (``tests/test_stats_coverage.py``).

    Args:
        k: seeds (≥ 2).
        confidence: the nominal coverage the percentile interval is built for.

    Returns:
        The coverage in (0, 1).
    """
    if k < 2:
        raise LorascopeError(f"a bootstrap over seeds needs at least 2 seeds; got {k}")
    if k == 2:
        return 0.5
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return float(2 * stats.t.cdf(z * np.sqrt((k - 1) / k), k - 1) - 1)


LOG_METHOD = "hierarchical bootstrap (seeds, then samples) of the mean log ratio, percentile, t-widened"


def _log_deviations(estimates: np.ndarray, replicates: np.ndarray, k: int) -> np.ndarray:
    """Per-seed sample-bootstrap deviations on the log scale: log(estimate + centred replicate) − log(estimate).

    The replicates are centred additively first (as in :func:`_deviations`: duplicated samples bias
    them) and only then taken to the log scale; a replicate that lands at or below 0 has no log
    and becomes NaN.
    """
    shifted = estimates[:, None] + _deviations(replicates, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(shifted > 0, np.log(np.where(shifted > 0, shifted, 1.0)), np.nan)
    return np.asarray(logs - np.log(estimates)[:, None])


def hierarchical_log_ratio_interval(
    numerator: Any,
    denominator: Any,
    numerator_replicates: Any | None = None,
    denominator_replicates: Any | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 4000,
    seed: int = 0,
) -> ConfidenceInterval:
    """Interval for the mean over seeds of log(numerator / denominator), over seeds and samples.

    Each replicate resamples seed pairs with replacement and adds one shared bootstrap resample of
    the samples (as :func:`hierarchical_interval`), all on the log scale. The interval is the
    replicates' percentile interval, so it keeps their asymmetry, widened about their median by
    t_{k−1} · sqrt(k / (k − 1)) / z: the same small-k calibration as :func:`hierarchical_interval`
    (a plain percentile interval of a seed bootstrap undercovers with a few seeds). With symmetric
    replicates it is the Student t interval of the per-pair log ratios; exp carries it to the
    ratio scale, where it is asymmetric.

    Args:
        numerator: float array [k], positive (e.g. LoRA drift per seed).
        denominator: float array [k], positive, paired by seed (e.g. full fine-tuning drift).
        numerator_replicates: float array [k, B]: bootstrap-over-samples replicates of each
            numerator, replicate b using the same sample resample for every seed and both
            quantities. None (with ``denominator_replicates`` None): seeds only.
        denominator_replicates: float array [k, B], likewise.
        confidence: nominal coverage.
        n_resamples: hierarchical replicates R.
        seed: seed of the resampling.

    Returns:
        ConfidenceInterval of the mean log ratio (estimate = mean over seeds of log(a_i / b_i));
        ``note`` counts replicates dropped because a resampled value was ≤ 0.

    Raises:
        LorascopeError: fewer than 2 seeds, mismatched shapes, values ≤ 0 or not finite.
    """
    a = np.asarray(numerator, dtype=np.float64)
    b = np.asarray(denominator, dtype=np.float64)
    k = a.shape[0] if a.ndim == 1 else 0
    if k < 2 or b.shape != (k,):
        raise LorascopeError(f"need at least 2 seeds and one value per seed for both quantities; got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or (a <= 0).any() or (b <= 0).any():
        raise LorascopeError("per-seed values must be finite and > 0 for a log ratio")
    if (numerator_replicates is None) != (denominator_replicates is None):
        raise LorascopeError("give sample replicates for both quantities or for neither")
    rng = np.random.default_rng(seed)
    r = np.log(a) - np.log(b)
    seeds = rng.integers(0, k, size=(n_resamples, k))
    values = r[seeds]  # [R, k]
    if numerator_replicates is not None and denominator_replicates is not None:
        dev = (_log_deviations(a, np.asarray(numerator_replicates, dtype=np.float64), k)
               - _log_deviations(b, np.asarray(denominator_replicates, dtype=np.float64), k))
        cols = rng.integers(0, dev.shape[1], size=n_resamples)
        values = values + dev[seeds, cols[:, None]]  # one sample resample per replicate, shared by its seeds
    means = values.mean(axis=1)
    finite = np.isfinite(means)
    note = "" if finite.all() else f"{int((~finite).sum())} of {n_resamples} replicates undefined (a value ≤ 0) and dropped"
    estimate = float(r.mean())
    if finite.sum() < 2:
        return ConfidenceInterval(estimate, float("nan"), float("nan"), confidence, LOG_METHOD, k, n_resamples, note)
    tail = (1.0 - confidence) / 2.0
    q_low, centre, q_high = np.quantile(means[finite], [tail, 0.5, 1.0 - tail])
    widen = float(stats.t.ppf(1.0 - tail, k - 1) * np.sqrt(k / (k - 1)) / stats.norm.ppf(1.0 - tail))
    low = estimate + widen * float(q_low - centre)
    high = estimate + widen * float(q_high - centre)
    return ConfidenceInterval(estimate, low, high, confidence, LOG_METHOD, k, n_resamples, note)
