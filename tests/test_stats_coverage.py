"""Coverage of the intervals the verdicts report, by simulation at the studies' size (8 seeds).

Each simulation draws data from a known truth many times and counts how often the nominal 95%
interval contains it. The data are shaped like the published studies: per-seed drift lognormal with
log-sd 0.9 (one study spans 0.004–0.109 across seeds) and LoRA and full drift correlated 0.76 across
seeds as there; a dev metric measured on one fixed set of 300 examples, whose examples favour one
method or the other the same way for every seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import special

from lorascope.stats import (
    crossed_difference,
    h1a_verdict,
    hierarchical_interval,
    hierarchical_log_ratio_interval,
    log_ratio_summary,
    t_interval,
)
from lorascope.stats.frontier import SweepPoint, _matched_log_ratio, matched_accuracy
from lorascope.stats.logratio import reduction_from_log

K = 8
REPS = 600
LOG_SD, RHO = 0.9, 0.76
TRUE_RATIO = 0.5  # LoRA / full, geometric mean over the population of seeds
TRUE_REDUCTION = 100 * (1 - TRUE_RATIO)  # = Δ%; equal log-sds make it the ratio of means' reduction too

DeltaInterval = Callable[[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, int], tuple[float, float]]


def lognormal_drifts(rng, sample_sd: float = 0.0, n_boot: int = 200):
    """Per-seed drifts [K] of both methods and, with ``sample_sd`` > 0, per-run sample-bootstrap replicates [K, B].

    The dev samples' effect on a method's drift is shared by all of its seeds (one set of samples):
    its draw ``g`` shifts every seed the same way, and the replicates of replicate b share one draw
    too, as a bootstrap of the shared samples would.
    """
    cov = LOG_SD**2 * np.array([[1.0, RHO], [RHO, 1.0]])
    z = rng.multivariate_normal([np.log(0.035 * TRUE_RATIO), np.log(0.035)], cov, size=K)
    lora, full = np.exp(z[:, 0]), np.exp(z[:, 1])
    if sample_sd == 0.0:
        return lora, full, None, None
    g = rng.normal(size=2)
    lora = lora * np.exp(sample_sd * (g[0] + rng.normal(size=K)))
    full = full * np.exp(sample_sd * (g[1] + rng.normal(size=K)))
    gb = rng.normal(size=(2, n_boot))
    lora_reps = lora[:, None] * np.exp(sample_sd * (gb[0][None] + rng.normal(size=(K, n_boot))))
    full_reps = full[:, None] * np.exp(sample_sd * (gb[1][None] + rng.normal(size=(K, n_boot))))
    return lora, full, lora_reps, full_reps


def delta_coverage(interval: DeltaInterval, *, sample_sd: float = 0.0, reps: int = REPS, seed: int = 0) -> float:
    """Share of simulated studies whose Δ% interval contains the true Δ%."""
    rng = np.random.default_rng(seed)
    hits = 0
    for r in range(reps):
        low, high = interval(*lognormal_drifts(rng, sample_sd), r)
        hits += low <= TRUE_REDUCTION <= high
    return hits / reps


def log_scale_hierarchical(lora, full, lora_reps, full_reps, r) -> tuple[float, float]:
    ci = reduction_from_log(hierarchical_log_ratio_interval(lora, full, lora_reps, full_reps, n_resamples=1000, seed=r))
    return ci.low, ci.high


def log_ratio_t(lora, full, lora_reps, full_reps, r) -> tuple[float, float]:
    return log_ratio_summary(lora, full).reduction_percent_ci


@pytest.mark.slow
@pytest.mark.parametrize("sample_sd", [0.0, 0.1])
def test_log_scale_reduction_interval_covers_lognormal_seeds(sample_sd):
    assert delta_coverage(log_scale_hierarchical, sample_sd=sample_sd) >= 0.93


def test_verdict_interval_on_log_ratios_covers_lognormal_seeds():
    assert delta_coverage(log_ratio_t) >= 0.93


def test_the_simulation_is_one_where_the_skew_matters():
    """A symmetric interval on the ratio scale (over seeds), blind to the skew, undercovers here."""
    def symmetric(lora, full, lora_reps, full_reps, r):
        ci = hierarchical_interval([lora, full], None, lambda a, b: 100 * (b - a) / b, n_resamples=1000, seed=r)
        return ci.low, ci.high

    assert delta_coverage(symmetric) < 0.92


def test_log_scale_interval_is_asymmetric_like_the_data():
    lora, full, lora_reps, full_reps = lognormal_drifts(np.random.default_rng(5), 0.1)
    low, high = log_scale_hierarchical(lora, full, lora_reps, full_reps, 0)
    est = log_ratio_summary(lora, full).reduction_percent
    # Δ% = 100(1 − ratio) is bounded by 100 above but not below: the interval reaches further down.
    assert low < est < high < 100 and est - low > 1.2 * (high - est)


# ---------------------------------------------------------------- a metric measured on a finite dev set

N_EXAMPLES = 300
EXAMPLE_SD = 1.5  # sd of an example's logit advantage of LoRA over full FT, the same for every seed
SEED_SD = 0.15  # sd of a run's overall logit shift
SHIFT = -0.1  # LoRA's mean logit shift


def _true_difference() -> float:
    """Population accuracy difference LoRA − full over examples and seeds (Monte Carlo, 2·10^6 draws)."""
    z = np.random.default_rng(12345).normal(size=(4, 2_000_000))
    u = 1.6 + 1.6 * z[0]
    return float(np.mean(special.expit(u + EXAMPLE_SD * z[1] + SHIFT + SEED_SD * z[2]) - special.expit(u + SEED_SD * z[3])))


TRUE_DIFF = _true_difference()


def correctness(rng) -> tuple[np.ndarray, np.ndarray]:
    """0/1 correctness [K, N_EXAMPLES] of LoRA and full runs on one freshly drawn dev set."""
    u = 1.6 + 1.6 * rng.normal(size=N_EXAMPLES)  # difficulty: about 80% accuracy
    v = EXAMPLE_SD * rng.normal(size=N_EXAMPLES)
    lora = rng.random((K, N_EXAMPLES)) < special.expit(u + v + SHIFT + SEED_SD * rng.normal(size=(K, 1)))
    full = rng.random((K, N_EXAMPLES)) < special.expit(u + SEED_SD * rng.normal(size=(K, 1)))
    return lora.astype(float), full.astype(float)


def metric_coverage(interval: Callable[[np.ndarray, np.ndarray], tuple[float, float]], *, reps: int = REPS,
                    seed: int = 0) -> float:
    """Share of simulated studies whose interval for the metric difference contains the population difference."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        low, high = interval(*correctness(rng))
        hits += low <= TRUE_DIFF <= high
    return hits / reps


def seeds_and_examples(lora, full) -> tuple[float, float]:
    return crossed_difference(lora, full).interval(0.95)


def seeds_only(lora, full) -> tuple[float, float]:
    return t_interval(lora.mean(1) - full.mean(1))


def test_h1a_interval_over_seeds_and_examples_covers_the_population_difference():
    assert metric_coverage(seeds_and_examples) >= 0.93


def test_the_simulation_is_one_where_the_dev_set_matters():
    """The seeds-only interval, blind to the dev set's luck, undercovers here: the test above is not vacuous."""
    assert metric_coverage(seeds_only) < 0.91


def test_h1a_verdict_uses_the_interval_over_seeds_and_examples():
    lora, full = correctness(np.random.default_rng(3))
    v = h1a_verdict(lora.mean(1), full.mean(1), lora_examples=lora, full_examples=full)
    assert (v.ci_low, v.ci_high) == pytest.approx(seeds_and_examples(lora, full))
    assert v.uncertainty == "seeds and dev examples" and v.ci_method == "t over seeds × dev examples"
    assert v.test.test.startswith("seeds × dev examples t-test") and "300 examples" in v.test.test
    plain = h1a_verdict(lora.mean(1), full.mean(1))
    assert plain.uncertainty == "seeds" and v.ci_high - v.ci_low > plain.ci_high - plain.ci_low
    # The finite dev set is a source of error too: the same distance from the margin is fewer standard errors.
    assert 0 < abs(v.test.statistic) < abs(plain.test.statistic)


def percentile_bootstrap_coverage(k: int, reps: int = 4000, n_boot: int = 400, seed: int = 0) -> float:
    """Share of normal samples of size ``k`` whose plain 95% percentile bootstrap interval contains the mean."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(reps, k))
    picks = rng.integers(0, k, size=(reps, n_boot, k))
    means = np.take_along_axis(x[:, None, :], picks, axis=2).mean(axis=2)  # [reps, n_boot]
    low, high = np.quantile(means, [0.025, 0.975], axis=1)
    return float(((low <= 0) & (0 <= high)).mean())


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_plain_bootstrap_coverage_is_what_a_simulation_finds(k):
    """The coverage the limitations section quotes for the bootstrap it does not use. Without the √((k−1)/k)
    shrinkage the formula would say 81% at k = 3, where the simulation finds 75%."""
    from lorascope.stats.hierarchical import plain_bootstrap_coverage

    assert plain_bootstrap_coverage(k) == pytest.approx(percentile_bootstrap_coverage(k), abs=0.03)


FRONTIER_TRUTH = {"lora": ([0.80, 0.84, 0.87], [-4.0, -3.5, -3.0]), "full": ([0.81, 0.85, 0.88], [-3.0, -2.5, -2.0])}


def frontier_coverage(interval: Callable[[list[SweepPoint], int], tuple[float, float]], k: int, reps: int = 200) -> float:
    """Share of simulated sweeps (3 points per method, ``k`` seeds each: accuracy sd 0.01, log-drift sd 0.5 around
    two known frontiers) whose matched-accuracy interval of the drift ratio contains the true ratio."""
    def truth(method: str) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.array([m]), np.exp(np.array([d]))) for m, d in zip(*FRONTIER_TRUTH[method])]

    true_ratio = float(np.exp(_matched_log_ratio(truth("lora"), truth("full"), 21)))
    rng = np.random.default_rng(0)
    hits = 0
    for r in range(reps):
        points = [SweepPoint(f"{method}{i}", method, i, m + 0.01 * rng.normal(size=k), np.exp(d + 0.5 * rng.normal(size=k)))
                  for method, (ms, ds) in FRONTIER_TRUTH.items() for i, (m, d) in enumerate(zip(ms, ds))]
        low, high = interval(points, r)
        hits += low <= true_ratio <= high
    return hits / reps


def plain_frontier_bootstrap(points: list[SweepPoint], seed: int) -> tuple[float, float]:
    """The percentile interval of a bootstrap that resamples each point's seeds as they are (uncalibrated)."""
    rng = np.random.default_rng(seed)
    groups = {m: [(p.metric, p.drift) for p in points if p.method == m] for m in ("lora", "full")}

    def resample(group):
        return [(m[i], d[i]) for m, d in group for i in [rng.integers(0, m.size, m.size)]]

    boot = np.array([_matched_log_ratio(resample(groups["lora"]), resample(groups["full"]), 21) for _ in range(400)])
    low, high = np.quantile(boot[~np.isnan(boot)], [0.025, 0.975])
    return float(np.exp(low)), float(np.exp(high))


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3])
def test_the_matched_accuracy_interval_covers_the_true_ratio(k):
    def calibrated(points, seed):
        low, high = matched_accuracy(points, n_resamples=400, seed=seed)["ci"]
        return low, high

    assert frontier_coverage(calibrated, k) >= 0.91


@pytest.mark.slow
def test_the_frontier_simulation_is_one_where_a_plain_bootstrap_undercovers():
    assert frontier_coverage(plain_frontier_bootstrap, 3) < 0.88
