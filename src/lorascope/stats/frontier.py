"""The accuracy–drift frontier of a learning-rate (or any setting) sweep, and the comparison of two
methods at matched accuracy.

A comparison of LoRA and full fine-tuning at one hand-picked learning rate each answers a question
about two learning rates, not about the methods: a larger learning rate moves a model further and
(up to a point) scores higher. A sweep gives each method a *frontier* — mean dev metric against
mean drift across its settings — and the methods are compared where the frontiers overlap: at an
accuracy both reach, which one drifted less?

Arrays in, numbers out (no model code, no files). Drift is compared on the log scale: drifts are
positive and skewed across seeds (one published study spans 0.004–0.109), so ratios, not
differences, are the stable quantity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from lorascope.stats.result import json_number

CI_METHOD = ("bootstrap over seeds, each point's deviations scaled by √(k/(k−1)), percentile interval widened by "
             "t_df/z (df = Σ(k−1))")


@dataclass(frozen=True)
class SweepPoint:
    """One (method, setting) of a sweep, over its seeds.

    Attributes:
        label: the point's name (e.g. ``lora_lr0p002``).
        method: ``lora`` or ``full``.
        setting: the swept value (e.g. the learning rate); orders a method's points.
        metric: float array [n_seeds], the dev metric of each seed's run.
        drift: float array [n_seeds], the layer-averaged drift of each seed's run (> 0).
    """

    label: str
    method: str
    setting: float
    metric: np.ndarray
    drift: np.ndarray


def _t_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    n = values.size
    if n < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


def frontier_table(points: Sequence[SweepPoint], level: float = 0.95) -> list[dict[str, object]]:
    """One row per point, ordered by method then setting: the mean metric with its t interval over
    seeds, and the geometric-mean drift with its interval from the t interval of log drift (so it is
    asymmetric, as the drifts are)."""
    rows = []
    for p in sorted(points, key=lambda p: (p.method, p.setting)):
        log_drift = np.log(p.drift)
        lo, hi = _t_interval(log_drift, level)
        m_lo, m_hi = _t_interval(p.metric, level)
        rows.append({"label": p.label, "method": p.method, "setting": p.setting, "n_seeds": int(p.metric.size),
                     "metric_mean": json_number(p.metric.mean()), "metric_ci": [json_number(m_lo), json_number(m_hi)],
                     "drift_gmean": json_number(np.exp(log_drift.mean())),
                     "drift_ci": [json_number(np.exp(lo)), json_number(np.exp(hi))]})
    return rows


def _drift_at(metric_means: np.ndarray, log_drift_means: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Log drift at each accuracy level, interpolated linearly between a method's points ordered by
    their mean metric (points with equal metric are averaged)."""
    order = np.argsort(metric_means, kind="stable")
    x, y = metric_means[order], log_drift_means[order]
    ux = np.unique(x)
    uy = np.array([y[x == v].mean() for v in ux])
    return np.asarray(np.interp(levels, ux, uy), dtype=float)


def _matched_log_ratio(a: Sequence[tuple[np.ndarray, np.ndarray]], b: Sequence[tuple[np.ndarray, np.ndarray]],
                       n_levels: int) -> float:
    """Mean over accuracy levels both methods reach of log(drift_a / drift_b); NaN with no overlap.

    Args:
        a, b: per point, (metric [n_seeds], drift [n_seeds]) of one method's points.
    """
    am = np.array([m.mean() for m, _ in a])
    bm = np.array([m.mean() for m, _ in b])
    low, high = max(am.min(), bm.min()), min(am.max(), bm.max())
    if not low <= high:
        return float("nan")
    levels = np.linspace(low, high, n_levels)
    ad = np.array([np.log(d).mean() for _, d in a])
    bd = np.array([np.log(d).mean() for _, d in b])
    return float(np.mean(_drift_at(am, ad, levels) - _drift_at(bm, bd, levels)))


def matched_accuracy(points: Sequence[SweepPoint], *, method_a: str = "lora", method_b: str = "full",
                     n_levels: int = 21, n_resamples: int = 2000, alpha: float = 0.05, seed: int = 0) -> dict[str, object]:
    """Drift of ``method_a`` relative to ``method_b`` at the accuracy levels both reach.

    Each method's frontier is the piecewise-linear curve through its points' (mean metric, mean log
    drift), ordered by metric. Over the overlap of the two metric ranges (``n_levels`` evenly
    spaced levels), the statistic is the mean log ratio of drift a / drift b, reported as a ratio.
    Uncertainty: a bootstrap over seeds, resampling each point's runs independently (the runs of a
    point share nothing with another's but the data), recomputing the means, the overlap and the
    statistic. A plain percentile interval would treat each point's k seeds as the population and
    cover about 84% for a nominal 95% at k = 3 (``tests/test_stats_coverage.py``), so it is calibrated
    as :func:`~lorascope.stats.hierarchical.hierarchical_interval` is: each resampled run's metric and
    log drift keep their point's mean and have their deviation from it scaled by √(k/(k−1)), which
    undoes the bootstrap's (k−1)/k variance shrinkage, and the replicates are widened about their
    median by t_df/z for the tails of a variance estimated from df = Σ(k−1) degrees of freedom. The
    interval is their percentile interval; p (two-sided, for "ratio = 1") is twice the smaller tail of
    the same widened replicates, so p < α exactly when the interval excludes 1 (up to the +1 smoothing).

    The decision rule, fixed before any study runs: "at matched accuracy, a drifts less" when the
    interval's upper end is below 1; "drifts more" when its lower end is above 1; otherwise undecided.
    With no overlap (one method never reaches the other's accuracy range) nothing is compared.

    Returns:
        dict with ``ratio`` (geometric-mean drift ratio a/b over the overlap), ``ci``, ``p``
        (bootstrap, two-sided), ``ci_method``, ``overlap`` [low, high] of the metric, ``n_resamples``,
        ``outcome`` (``less`` | ``more`` | ``undecided`` | ``no_overlap``) and ``statement``. With one seed
        per point there is no interval (``ci`` and ``p`` None, ``undecided``).
    """
    a = [(p.metric, p.drift) for p in points if p.method == method_a]
    b = [(p.metric, p.drift) for p in points if p.method == method_b]
    if not a or not b:
        raise ValueError(f"matched accuracy needs points of both {method_a} and {method_b}")
    observed = _matched_log_ratio(a, b, n_levels)
    am = [m.mean() for m, _ in a]
    bm = [m.mean() for m, _ in b]
    overlap = [max(min(am), min(bm)), min(max(am), max(bm))]
    base = {"method_a": method_a, "method_b": method_b, "n_levels": n_levels, "n_resamples": n_resamples,
            "overlap": [json_number(v) for v in overlap], "n_points": {method_a: len(a), method_b: len(b)}}
    if np.isnan(observed):
        return {**base, "ratio": None, "ci": [None, None], "p": None, "outcome": "no_overlap",
                "statement": (f"the frontiers do not overlap: {method_a} reaches metric {min(am):.3f}–{max(am):.3f}, "
                              f"{method_b} {min(bm):.3f}–{max(bm):.3f}; no comparison at matched accuracy")}
    ratio = float(np.exp(observed))
    df = sum(m.size - 1 for m, _ in a + b)
    if df == 0:
        return {**base, "ratio": json_number(ratio), "ci": [None, None], "p": None, "ci_method": CI_METHOD,
                "outcome": "undecided",
                "statement": (f"at matched accuracy ({overlap[0]:.3f}–{overlap[1]:.3f}) drift ratio {method_a}/{method_b} "
                              f"{ratio:.2f}, with no interval: every point has one seed, so nothing is established")}
    rng = np.random.default_rng(seed)
    # Widened once per point; a resample then only picks runs: widening commutes with the picking.
    wide_a = [(_widened(m), np.exp(_widened(np.log(d)))) for m, d in a]
    wide_b = [(_widened(m), np.exp(_widened(np.log(d)))) for m, d in b]

    def resample(group: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for m, d in group:
            idx = rng.integers(0, m.size, m.size)
            out.append((m[idx], d[idx]))
        return out

    boot = np.array([_matched_log_ratio(resample(wide_a), resample(wide_b), n_levels) for _ in range(n_resamples)])
    valid = boot[~np.isnan(boot)]
    if valid.size:
        median = np.median(valid)
        z = stats.norm.ppf(1 - alpha / 2)
        valid = median + (valid - median) * float(stats.t.ppf(1 - alpha / 2, df)) / z
    lo, hi = (np.quantile(valid, [alpha / 2, 1 - alpha / 2]) if valid.size else (np.nan, np.nan))
    # Two-sided bootstrap p for log ratio = 0: twice the smaller tail (+1 smoothing: never exactly 0).
    tail = min((valid >= 0).sum(), (valid <= 0).sum())
    p = min(1.0, 2 * (tail + 1) / (valid.size + 1)) if valid.size else float("nan")
    ci = (float(np.exp(lo)), float(np.exp(hi)))
    outcome = "less" if ci[1] < 1 else "more" if ci[0] > 1 else "undecided"
    reading = {"less": f"{method_a} drifts less", "more": f"{method_a} drifts more",
               "undecided": "no difference is established"}[outcome]
    statement = (f"at matched accuracy ({overlap[0]:.3f}–{overlap[1]:.3f}) {reading}: drift ratio {method_a}/{method_b} "
                 f"{ratio:.2f} ({1 - alpha:.0%} bootstrap interval over seeds, t-calibrated, {ci[0]:.2f}–{ci[1]:.2f}, p = {p:.3g}, "
                 f"{n_resamples} resamples; {valid.size} overlapped)")
    return {**base, "ratio": json_number(ratio), "ci": [json_number(ci[0]), json_number(ci[1])], "p": json_number(p),
            "ci_method": CI_METHOD, "n_overlapping_resamples": int(valid.size), "outcome": outcome,
            "statement": statement}


def _widened(values: np.ndarray) -> np.ndarray:
    """One point's runs [k] with each deviation from their mean scaled by √(k/(k−1)): the mean of k runs
    resampled from them then varies as much as the mean of k new runs would."""
    k = values.size
    if k < 2:
        return np.asarray(values)
    centre = values.mean()
    return np.asarray(centre + np.sqrt(k / (k - 1)) * (values - centre))


def setting_interaction(points: Sequence[SweepPoint], *, method_a: str = "lora", method_b: str = "full") -> dict[str, object]:
    """Does the drift difference between the methods depend on the swept setting?

    Two-way ANOVA on log drift with factors method and *level* (the rank of a point's setting within
    its method: the i-th learning rate of each method's sweep share a level), tested by the
    method × level interaction (type II sums of squares, statsmodels). Needs the same number of
    levels (≥ 2) for both methods.

    Returns:
        dict with ``test``, ``F``, ``df`` [numerator, denominator], ``p``, ``n`` (runs), ``levels``,
        and ``statement``; ``p`` None with the reason when the design does not allow the test.
    """
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    rows = []
    levels = {}
    for method in (method_a, method_b):
        own = sorted((p for p in points if p.method == method), key=lambda p: p.setting)
        levels[method] = len(own)
        for level, p in enumerate(own):
            rows += [{"method": method, "level": level, "log_drift": float(np.log(d))} for d in p.drift]
    base = {"test": "two-way ANOVA on log drift, method x setting level (type II)", "n": len(rows), "levels": levels}
    if levels[method_a] != levels[method_b] or levels[method_a] < 2:
        return {**base, "F": None, "df": None, "p": None,
                "statement": f"no interaction test: it needs the same number (>= 2) of settings per method, got {levels}"}
    frame = pd.DataFrame(rows)
    table = anova_lm(smf.ols("log_drift ~ C(method) * C(level)", data=frame).fit(), typ=2)
    row = table.loc["C(method):C(level)"]
    f, p_value = float(row["F"]), float(row["PR(>F)"])
    df = [int(row["df"]), int(table.loc["Residual", "df"])]
    depends = "depends" if p_value < 0.05 else "is not shown to depend"
    statement = (f"the drift ratio {method_a}/{method_b} {depends} on the setting: method x setting interaction "
                 f"F({df[0]}, {df[1]}) = {f:.2f}, p = {p_value:.3g} (two-way ANOVA on log drift, {len(rows)} runs)")
    return {**base, "F": json_number(f), "df": df, "p": json_number(p_value), "statement": statement}
