"""Statistics: exact permutation p-values, t-test, bootstrap, effect size, corrections, verdicts."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from lorascope.errors import LorascopeError
from lorascope.stats import (
    TestResult,
    bonferroni,
    bonferroni_alpha,
    bootstrap_ci,
    cohens_d_paired,
    correct,
    crossed_difference,
    effect_size_interval,
    fieller_interval,
    h1a_verdict,
    h1b_verdict,
    hierarchical_interval,
    hierarchical_log_ratio_interval,
    holm,
    log_ratio_summary,
    min_attainable_p,
    paired_t_test,
    seeds_needed,
    sign_flip_test,
    t_interval,
)


def brute_force_sign_flip(deltas, alternative):
    """p by listing every sign vector explicitly (independent of the package's doubling trick)."""
    d = np.asarray(deltas, dtype=float)
    sums = np.array([np.dot(s, np.abs(d)) for s in itertools.product([1, -1], repeat=len(d))])
    # The observed signs are one of the patterns; compare against |d| with the observed signs.
    obs = np.dot(np.sign(d), np.abs(d))
    tol = 1e-9
    if alternative == "greater":
        return np.mean(sums >= obs - tol)
    if alternative == "less":
        return np.mean(sums <= obs + tol)
    return np.mean(np.abs(sums) >= abs(obs) - tol)


# ---------------------------------------------------------------- sign-flip permutation test


def test_exact_p_for_three_positive_deltas():
    res = sign_flip_test([0.1, 0.2, 0.3])
    assert res.p_value == 0.25
    assert res.min_attainable_p == 0.25
    assert res.n == 3 and res.test == "sign-flip permutation (exact)"
    assert res.statistic == pytest.approx(0.2)
    greater = sign_flip_test([0.1, 0.2, 0.3], alternative="greater")
    assert greater.p_value == 0.125 and greater.min_attainable_p == 0.125
    assert sign_flip_test([0.1, 0.2, 0.3], alternative="less").p_value == 1.0


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize(
    "deltas",
    [
        [1.0, -2.0, 3.0, 0.5, -0.25, 4.0],
        [1.0, 1.0, -1.0, 2.0, 1.0],  # ties between magnitudes
        [0.3, -0.1, 0.2, 0.1, -0.3, 0.2, 0.1],  # decimal ties that rounding could split
    ],
)
def test_exact_p_matches_brute_force(deltas, alternative):
    assert sign_flip_test(deltas, alternative=alternative).p_value == pytest.approx(
        brute_force_sign_flip(deltas, alternative), abs=1e-15
    )


def test_zero_deltas_do_not_count_towards_power():
    res = sign_flip_test([0.0, 1.0, 2.0, 3.0])
    assert res.p_value == 0.25  # as for the three non-zero values alone
    assert res.min_attainable_p == 0.25 and res.n == 4
    assert "zero difference" in res.note
    all_zero = sign_flip_test([0.0, 0.0, 0.0])
    assert all_zero.p_value == 1.0 and all_zero.min_attainable_p == 1.0


def test_min_attainable_p_formula():
    assert min_attainable_p(3, "two-sided") == 0.25
    assert min_attainable_p(3, "greater") == 0.125
    assert min_attainable_p(6, "less") == 1 / 64
    assert min_attainable_p(0, "greater") == 1.0


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_exact_p_matches_scipy_permutation_test(alternative):
    d = np.random.default_rng(0).normal(0.3, 1.0, size=9)
    ref = stats.permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
        n_resamples=np.inf, alternative=alternative,
    )
    assert sign_flip_test(d, alternative=alternative).p_value == pytest.approx(ref.pvalue, abs=1e-12)


def test_monte_carlo_close_to_exhaustive():
    d = np.random.default_rng(1).normal(0.4, 1.0, size=16)
    exact = sign_flip_test(d)
    mc = sign_flip_test(d, max_exact=2**10, n_resamples=40_000, seed=5)
    assert exact.test.endswith("(exact)") and mc.test.endswith("(Monte Carlo)")
    assert mc.n_resamples == 40_000
    se = math.sqrt(exact.p_value * (1 - exact.p_value) / 40_000)
    assert abs(mc.p_value - exact.p_value) < 4 * se + 1e-4
    assert mc.p_value == sign_flip_test(d, max_exact=2**10, n_resamples=40_000, seed=5).p_value  # seeded
    assert mc.min_attainable_p == max(2.0**-15, 1 / 40_001)  # the exact floor binds here
    assert sign_flip_test(d, max_exact=2**10, n_resamples=999).min_attainable_p == 1 / 1000


def test_monte_carlo_never_returns_zero():
    d = np.arange(1.0, 41.0)  # all positive: exact p would be 2^-39
    mc = sign_flip_test(d, alternative="greater", n_resamples=999)
    assert mc.p_value == pytest.approx(1 / 1000)


def test_shifted_null():
    res = sign_flip_test([0.05, 0.06, 0.07], null=0.1, alternative="less")
    assert res.statistic == pytest.approx(-0.04)
    assert res.p_value == 0.125


# ---------------------------------------------------------------- t-test, intervals, effect size


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_t_test_matches_scipy(alternative):
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.8, 0.05, 6), rng.normal(0.78, 0.05, 6)
    res = paired_t_test(a - b, alternative=alternative)
    ref = stats.ttest_rel(a, b, alternative=alternative)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert res.n == 6 and "df=5" in res.test


def test_t_test_zero_variance_is_nan_with_note():
    res = paired_t_test([0.02, 0.02, 0.02])
    assert math.isnan(res.statistic) and math.isnan(res.p_value)
    assert "zero variance" in res.note
    assert res.to_dict()["p_value"] is None


def test_t_interval_hand_computed():
    d = np.array([1.0, 2.0, 3.0, 4.0])
    half = stats.t.ppf(0.975, 3) * np.std(d, ddof=1) / 2.0
    assert t_interval(d) == pytest.approx((2.5 - half, 2.5 + half))


def test_cohens_d_hand_computed():
    # mean 2.5, sd = sqrt(((1.5² + 0.5²) · 2) / 3) = sqrt(5/3)
    assert cohens_d_paired([1.0, 2.0, 3.0, 4.0]) == pytest.approx(2.5 / math.sqrt(5 / 3), rel=1e-12)
    assert cohens_d_paired([-1.0, 1.0]) == pytest.approx(0.0)
    assert math.isnan(cohens_d_paired([0.3, 0.3, 0.3]))



@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e200, 5e-324])
def test_t_test_interval_and_effect_size_do_not_depend_on_the_scale(scale):
    # t, p and d_z are scale-free and the interval scales with the data. Squared deviations of
    # differences below ~1e-154 underflow to 0 (t = inf, p = 0 where p is 0.2048), above ~1e154
    # they overflow (p = 1), and subnormal ones gave p = NaN without a note.
    unit = np.array([1.0, 2.0]) if scale == 5e-324 else np.array([1.0, 3.0, 2.0])
    for alternative in ("two-sided", "greater", "less"):
        assert paired_t_test(unit * scale, alternative=alternative).p_value == pytest.approx(
            stats.ttest_1samp(unit, 0.0, alternative=alternative).pvalue, rel=1e-12)
    assert cohens_d_paired(unit * scale) == pytest.approx(cohens_d_paired(unit), rel=1e-12)
    assert effect_size_interval(unit * scale) == pytest.approx(effect_size_interval(unit), rel=1e-9)
    if scale != 5e-324:  # a subnormal interval cannot carry 12 digits
        assert t_interval(unit * scale) == pytest.approx(tuple(scale * x for x in t_interval(unit)), rel=1e-12)

def test_bootstrap_ci_matches_scipy_and_is_seeded():
    data = np.random.default_rng(3).exponential(1.0, 30)
    ci = bootstrap_ci(data, n_resamples=2000, seed=7, method="percentile")
    ref = stats.bootstrap((data,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(7))
    assert (ci.low, ci.high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert ci.estimate == pytest.approx(data.mean())
    assert ci.low < ci.estimate < ci.high
    assert bootstrap_ci(data, n_resamples=2000, seed=7) == bootstrap_ci(data, n_resamples=2000, seed=7)
    assert ci.note == ""


def test_bootstrap_ci_degenerate_and_small():
    ci = bootstrap_ci([0.5, 0.5, 0.5])
    assert (ci.low, ci.estimate, ci.high) == (0.5, 0.5, 0.5)
    assert "single point" in ci.note and "undercover" in ci.note
    with pytest.raises(LorascopeError, match="at least 2"):
        bootstrap_ci([1.0])


def test_paired_bootstrap_of_a_ratio():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    b = 2 * a + np.array([0.1, -0.1, 0.2, -0.2, 0.0, 0.05])
    ci = bootstrap_ci(a, b, statistic=lambda x, y, axis=-1: x.mean(axis) / y.mean(axis), n_resamples=2000)
    assert ci.low < 0.5 < ci.high and ci.high - ci.low < 0.05


def test_fieller_interval_inverts_the_t_test():
    rng = np.random.default_rng(4)
    full = rng.normal(0.30, 0.03, 5)
    lora = 0.6 * full + rng.normal(0, 0.01, 5)
    low, high = fieller_interval(lora, full)
    assert low < lora.mean() / full.mean() < high
    # at the bounds the two-sided t-test of mean(lora − ρ·full) = 0 has p = 0.05 exactly
    for rho in (low, high):
        assert stats.ttest_1samp(lora - rho * full, 0.0).pvalue == pytest.approx(0.05, rel=1e-6)
    assert fieller_interval([1.0, -1.0, 2.0], [0.1, -0.1, 0.05]) == (-math.inf, math.inf)



@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fieller_interval_matches_the_textbook_formula(seed):
    # Fieller (1954) in its closed form: with variances v of the means and g = t² v_bb / m_b², the
    # interval is [ρ̂ − g v_ab/v_bb ± (t/|m_b|) √(v_aa − 2ρ̂ v_ab + ρ̂² v_bb − g (v_aa − v_ab²/v_bb))] / (1 − g),
    # bounded only when g < 1, i.e. when the denominator's mean is significantly non-zero.
    rng = np.random.default_rng(seed)
    for _ in range(25):
        n = int(rng.integers(2, 9))
        full = rng.normal(rng.choice([0.05, 0.3, -1.0]), rng.choice([0.02, 0.3]), n)
        lora = 0.7 * full + rng.normal(0, rng.choice([0.01, 0.2]), n)
        confidence = float(rng.choice([0.9, 0.95]))
        t = stats.t.ppf(0.5 + confidence / 2, n - 1)
        cov = np.cov(lora, full) / n
        v_aa, v_ab, v_bb = cov[0, 0], cov[0, 1], cov[1, 1]
        m_a, m_b = lora.mean(), full.mean()
        g = t * t * v_bb / m_b**2
        low, high = fieller_interval(lora, full, confidence=confidence)
        assert (g >= 1) == (stats.ttest_1samp(full, 0.0).pvalue >= 1 - confidence)
        if g >= 1:
            assert (low, high) == (-math.inf, math.inf)
            continue
        rho = m_a / m_b
        root = t / abs(m_b) * math.sqrt(v_aa - 2 * rho * v_ab + rho**2 * v_bb - g * (v_aa - v_ab**2 / v_bb))
        centre = rho - g * v_ab / v_bb
        assert low == pytest.approx((centre - root) / (1 - g), rel=1e-8, abs=1e-10)
        assert high == pytest.approx((centre + root) / (1 - g), rel=1e-8, abs=1e-10)

# ---------------------------------------------------------------- multiple comparisons


@pytest.mark.slow
def test_bonferroni_and_holm_hand_computed_and_match_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    bonf = bonferroni(p)
    np.testing.assert_allclose(bonf.p_adjusted, [0.04, 0.16, 0.12, 0.02])
    assert bonf.reject.tolist() == [True, False, False, True]
    h = holm(p)
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → max so far 0.06
    np.testing.assert_allclose(h.p_adjusted, [0.03, 0.06, 0.06, 0.02])
    assert h.reject.tolist() == [True, False, False, True]
    assert holm(p, alpha=0.07).reject.tolist() == [True, True, True, True]
    for method in ("bonferroni", "holm"):
        reject, p_adj, _, _ = multipletests(p, alpha=0.05, method=method)
        res = correct(p, method=method)
        np.testing.assert_allclose(res.p_adjusted, p_adj)
        assert res.reject.tolist() == reject.tolist()
    assert json.loads(json.dumps(h.to_dict()))["method"] == "holm"
    assert bonferroni_alpha(0.05, 3) == pytest.approx(0.05 / 3)


def test_corrections_reject_bad_p_values():
    with pytest.raises(LorascopeError, match=r"\[0, 1\]"):
        holm([0.1, float("nan")])
    with pytest.raises(LorascopeError, match="method"):
        correct([0.1], method="fdr")


# ---------------------------------------------------------------- hypothesis verdicts

LORA_ACC = np.array([0.912, 0.905, 0.918, 0.910, 0.908, 0.915, 0.911, 0.909])
FULL_ACC = np.array([0.915, 0.912, 0.916, 0.914, 0.913, 0.917, 0.910, 0.916])


def test_h1a_supported_with_enough_seeds():
    v = h1a_verdict(LORA_ACC, FULL_ACC)
    assert v.status == "supported" and v.robust_to_normality
    assert v.test.test.startswith("paired t-test") and v.test.alternative == "greater"
    expected = stats.ttest_1samp(LORA_ACC - FULL_ACC + 0.03, 0.0, alternative="greater").pvalue
    assert v.n == 8 and v.p_value == pytest.approx(expected, rel=1e-12)
    assert v.secondary is not None and v.secondary.p_value == 2.0**-8  # exact floor: every delta above −0.03
    assert v.secondary_status == "supported" and v.tests_agree
    assert v.estimate == pytest.approx((LORA_ACC - FULL_ACC).mean())
    assert v.ci_low < v.estimate < v.ci_high
    assert "TOST" in v.extra["equivalence"].test
    assert json.loads(json.dumps(v.to_dict()))["status"] == "supported"


def test_h1a_rejected_when_lora_is_far_behind():
    v = h1a_verdict(LORA_ACC - 0.08, FULL_ACC)
    assert v.status == "rejected" and v.secondary_status == "rejected" and v.robust_to_normality
    assert v.p_value > 0.99 and v.reverse_p_value < 1e-6
    assert "contradict" in v.message


def test_h1a_non_inferiority_supports_a_lora_that_is_much_better():
    better = np.clip(FULL_ACC + 0.20, 0, 1)
    assert h1a_verdict(better, FULL_ACC).status == "supported"  # the protocol's "within 3 points of"
    eq = h1a_verdict(better, FULL_ACC, kind="equivalence")
    assert eq.status == "not supported"  # outside ±0.03: not equivalent, though not worse


def test_three_seeds_decide_by_t_but_the_exact_test_disagrees():
    v = h1a_verdict(LORA_ACC[:3], FULL_ACC[:3], n_comparisons=3)
    assert v.corrected_alpha == pytest.approx(0.05 / 3)
    assert v.status == "supported" and v.test.min_attainable_p is None
    assert v.secondary_status == "underpowered" and v.secondary.min_attainable_p == 0.125
    assert not v.tests_agree and not v.robust_to_normality
    assert "DISAGREES" in v.message and "0.125" in v.message
    exact = h1a_verdict(LORA_ACC[:3], FULL_ACC[:3], n_comparisons=3, test="sign-flip")
    assert exact.status == "underpowered" and "cannot give p below 0.125" in exact.message
    assert "0.05/3" in exact.message and "At least 6" in exact.message


def test_h1a_bootstrap_interval_option():
    v = h1a_verdict(LORA_ACC, FULL_ACC, ci_method="bootstrap")
    assert v.ci_method == "bootstrap BCa"
    assert v.ci_low < v.estimate < v.ci_high


def test_h1a_rejects_percentages_and_unpaired_input():
    with pytest.raises(LorascopeError, match="fractions"):
        h1a_verdict(LORA_ACC * 100, FULL_ACC * 100)
    with pytest.raises(LorascopeError, match="paired"):
        h1a_verdict(LORA_ACC[:5], FULL_ACC)
    with pytest.raises(LorascopeError, match="at least 2"):
        h1a_verdict(LORA_ACC[:1], FULL_ACC[:1])


FULL_DRIFT = np.array([0.30, 0.28, 0.33, 0.31, 0.29, 0.32, 0.30, 0.27])
# Per-seed ratios are never exactly proportional; exactly constant log ratios would leave the t-test undefined.
JITTER = np.array([1.02, 0.97, 1.01, 0.99, 1.03, 0.98, 1.00, 1.00])


def test_h1b_supported_for_a_large_reduction():
    v = h1b_verdict(0.5 * FULL_DRIFT * JITTER, FULL_DRIFT)
    assert v.status == "supported" and v.robust_to_normality
    gm = 0.5 * np.exp(np.mean(np.log(JITTER)))
    assert v.estimate == pytest.approx(1 - gm)  # 1 − geometric-mean ratio, not 1 − ratio of means
    assert v.details["log_ratio"]["gm_ratio"] == pytest.approx(gm)
    assert v.secondary.p_value == 2.0**-8 and v.test.alternative == "greater"
    expected = stats.ttest_1samp(np.log(0.8) - np.log(0.5 * JITTER), 0.0, alternative="greater").pvalue
    assert v.p_value == pytest.approx(expected, rel=1e-12)
    assert v.ci_low <= 1 - gm <= v.ci_high and v.ci_method == "t on per-seed log ratios"


def test_h1b_rejected_for_a_small_reduction():
    v = h1b_verdict(0.95 * FULL_DRIFT * JITTER, FULL_DRIFT)
    assert v.status == "rejected"
    assert v.estimate == pytest.approx(1 - 0.95 * np.exp(np.mean(np.log(JITTER))))


def test_h1b_not_supported_when_noise_hides_a_small_reduction():
    lora = np.array([0.10, 0.32, 0.15, 0.30, 0.32, 0.31, 0.30, 0.27])
    v = h1b_verdict(lora, FULL_DRIFT)
    assert v.estimate < 0.2 and v.status == "not supported"


def test_h1b_inconclusive_when_the_estimate_passes_but_noise_is_large():
    lora = np.array([0.10, 0.32, 0.15, 0.30, 0.12, 0.31, 0.20, 0.27])
    v = h1b_verdict(lora, FULL_DRIFT)
    assert v.estimate > 0.2 and v.p_value > 0.05
    assert v.status == "inconclusive"


def test_direction_verdict_decides_where_the_20_percent_claim_cannot():
    lora = 0.80 * FULL_DRIFT + np.array([0.004, -0.003, 0.002, -0.004, 0.003, -0.002, 0.001, -0.001])
    near = h1b_verdict(lora, FULL_DRIFT)
    assert near.status in ("inconclusive", "not supported")
    lower = h1b_verdict(lora, FULL_DRIFT, min_reduction=0.0, hypothesis="LoRA drifts less")
    assert lower.status == "supported" and lower.robust_to_normality and lower.hypothesis == "LoRA drifts less"


def test_h1b_underpowered_exact_test_with_three_seeds_over_three_tasks():
    v = h1b_verdict(0.5 * FULL_DRIFT[:3], FULL_DRIFT[:3], n_comparisons=3, test="sign-flip")
    assert v.status == "underpowered"
    assert v.p_value == 0.125 and v.corrected_alpha == pytest.approx(0.05 / 3)
    assert "no outcome could be significant" in v.message
    assert v.secondary is not None and v.secondary.test.startswith("paired t-test")


def test_h1b_bootstrap_interval_option_and_errors():
    v = h1b_verdict(0.5 * FULL_DRIFT * JITTER, FULL_DRIFT, ci_method="bootstrap")
    assert v.ci_method == "bootstrap BCa on per-seed log ratios" and v.ci_low <= v.estimate <= v.ci_high
    with pytest.raises(LorascopeError, match="paired by seed"):
        h1b_verdict(FULL_DRIFT[:4], FULL_DRIFT)
    with pytest.raises(LorascopeError, match="positive"):
        h1b_verdict(FULL_DRIFT, np.zeros(8))
    with pytest.raises(LorascopeError, match="NaN"):
        h1b_verdict(FULL_DRIFT, np.where(np.arange(8) == 2, np.nan, FULL_DRIFT))
    with pytest.raises(LorascopeError, match="min_reduction"):
        h1b_verdict(FULL_DRIFT, FULL_DRIFT, min_reduction=1.5)


# ---------------------------------------------------------------- power and intervals over seeds and samples


def test_seeds_needed_matches_the_t_power_it_promises():
    from statsmodels.stats.power import TTestPower

    deltas = np.array([0.02, 0.05, -0.01, 0.04, 0.03])
    info = seeds_needed(deltas, 0.05 / 3)
    dz = deltas.mean() / deltas.std(ddof=1)
    power = TTestPower().power
    assert power(effect_size=dz, nobs=info["t"], alpha=0.05 / 3, alternative="larger") >= 0.8
    assert power(effect_size=dz, nobs=info["t"] - 1, alpha=0.05 / 3, alternative="larger") < 0.8
    assert info["exact_floor"] == 6  # 2^-6 = 0.0156 ≤ 0.0167 < 2^-5
    away = seeds_needed(-deltas, 0.05)
    assert away["t"] is None and away["t_range"][1] is None and "unbounded" in away["note"]
    assert "points away" in seeds_needed(np.array([-0.05, -0.06, -0.04, -0.05]), 0.05)["note"]



def _t_power_by_integration(dz, n, alpha):
    """Power of the one-sided one-sample t-test, integrated from its definition (no noncentral-t code).

    T = (Z + δ) / √(V / df) with Z normal, V chi-square(df): P(T > c) = ∫ Φ(δ − c √(v / df)) f_V(v) dv.
    """
    from scipy import integrate

    df, delta = n - 1, dz * math.sqrt(n)
    crit = stats.t.isf(alpha, df)
    lo, hi = stats.chi2.ppf([1e-14, 1 - 1e-14], df)
    return integrate.quad(lambda v: stats.norm.sf(crit * math.sqrt(v / df) - delta) * stats.chi2.pdf(v, df), lo, hi,
                          limit=200, epsabs=1e-12)[0]


@pytest.mark.parametrize(("dz", "alpha", "expected"), [
    (0.7, 0.05 / 3, 21), (1.8584798541875704, 0.01, 6), (0.5, 0.001, 67), (2.0, 0.05 / 4, 6), (0.3, 0.05, 71)])
def test_pairs_for_power_is_the_smallest_n_by_an_independent_power(dz, alpha, expected):
    # The bisection visits n in the thousands, where 1 − special.nctdtr (statsmodels' TTestPower) is NaN
    # although the power is 1; read as "too little power" that sent it to 3138 pairs instead of 21.
    from lorascope.stats.power import pairs_for_power

    n = pairs_for_power(dz, alpha)
    assert n == expected
    assert _t_power_by_integration(dz, n, alpha) >= 0.8 > _t_power_by_integration(dz, n - 1, alpha)

def test_verdicts_carry_seeds_needed():
    v = h1b_verdict(0.7 * FULL_DRIFT[:3] + [0.01, -0.02, 0.015], FULL_DRIFT[:3], n_comparisons=3)
    assert v.seeds_needed["t"] >= 2 and v.seeds_needed["exact_floor"] == 6


def _crossed_data(rng, k, n, tau, sigma_sample, sigma_noise, n_boot=200):
    """Per-seed estimates and shared-resample replicates of a grand mean of 1.0 (seeds × samples)."""
    x = 1.0 + rng.normal(0, tau, k)[:, None] + rng.normal(0, sigma_sample, n)[None, :] + rng.normal(0, sigma_noise, (k, n))
    idx = rng.integers(0, n, (n_boot, n))
    return x.mean(1), x[:, idx].mean(2)


@pytest.mark.parametrize("k", [3, 8])
@pytest.mark.parametrize(("tau", "sigma_sample", "sigma_noise"), [(0.1, 0.0, 0.01), (0.02, 0.1, 0.1)])
def test_hierarchical_interval_covers_the_truth(k, tau, sigma_sample, sigma_noise):
    rng = np.random.default_rng(k)
    hits = 0
    for r in range(150):
        est, reps = _crossed_data(rng, k, 60, tau, sigma_sample, sigma_noise)
        ci = hierarchical_interval([est], [reps], n_resamples=1000, seed=r)
        hits += ci.low <= 1.0 <= ci.high
    assert hits / 150 >= 0.9


def test_uncalibrated_seed_bootstrap_would_undercover_at_three_seeds():
    """The planted bug the calibration guards against: a plain percentile interval over 3 seeds."""
    rng = np.random.default_rng(1)
    hits = 0
    for r in range(150):
        est, _ = _crossed_data(rng, 3, 60, 0.1, 0.0, 0.01)
        boot = est[np.random.default_rng(r).integers(0, 3, (1000, 3))].mean(1)
        lo, hi = np.quantile(boot, [0.025, 0.975])
        hits += lo <= 1.0 <= hi
    assert hits / 150 < 0.85


def test_hierarchical_interval_of_a_ratio_and_nan_replicates():
    rng = np.random.default_rng(3)
    lo_est, lo_reps = _crossed_data(rng, 5, 40, 0.01, 0.01, 0.01)
    fu_est, fu_reps = _crossed_data(rng, 5, 40, 0.01, 0.01, 0.01)
    lo_reps[0, 3] = np.nan
    ci = hierarchical_interval([0.5 * lo_est, fu_est], [0.5 * lo_reps, fu_reps], lambda a, b: 100 * (b - a) / b)
    assert ci.low < ci.estimate < ci.high and ci.estimate == pytest.approx(100 * (1 - 0.5 * lo_est.mean() / fu_est.mean()))
    assert np.isfinite([ci.low, ci.high]).all()


# ---------------------------------------------------------------- bad input and records


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sign_flip_test([]), "at least 1"),
        (lambda: sign_flip_test([1.0, float("nan")]), "NaN"),
        (lambda: sign_flip_test([1.0, 2.0], alternative="bigger"), "alternative"),
        (lambda: sign_flip_test([[1.0, 2.0]]), "1-D"),
        (lambda: paired_t_test([1.0]), "at least 2"),
        (lambda: cohens_d_paired([1.0]), "at least 2"),
        (lambda: bootstrap_ci([1.0, 2.0], confidence=95), "confidence"),
    ],
)
def test_bad_input_raises_lorascope_error(call, match):
    with pytest.raises(LorascopeError, match=match):
        call()


def test_result_records_name_n_and_exact_p():
    res = sign_flip_test([0.1, 0.2, 0.3])
    d = res.to_dict()
    assert d["test"] == res.test and d["n"] == 3 and d["p_value"] == 0.25 and d["min_attainable_p"] == 0.25
    assert isinstance(res, TestResult)
    json.dumps(d)


# ---------------------------------------------------------------- the log scale for relative drift

LORA_SKEWED = np.array([0.0148, 0.0108, 0.0044, 0.0090, 0.0849, 0.0378, 0.0144, 0.0055])
FULL_SKEWED = np.array([0.0099, 0.0235, 0.0111, 0.0568, 0.1087, 0.0519, 0.0351, 0.0118])


def test_log_ratio_summary_hand_computed():
    s = log_ratio_summary(LORA_SKEWED, FULL_SKEWED)
    r = np.log(LORA_SKEWED / FULL_SKEWED)
    assert s.gm_ratio == pytest.approx(np.exp(r.mean())) and s.reduction_percent == pytest.approx(100 * (1 - np.exp(r.mean())))
    half = stats.t.ppf(0.975, 7) * r.std(ddof=1) / np.sqrt(8)
    assert s.gm_ratio_ci == pytest.approx((np.exp(r.mean() - half), np.exp(r.mean() + half)))
    assert s.t_test.p_value == pytest.approx(stats.ttest_1samp(r, 0.0).pvalue, rel=1e-12)
    assert s.sign_flip.p_value == pytest.approx(brute_force_sign_flip(r, "two-sided"))
    low, high = s.reduction_percent_ci
    assert low < s.reduction_percent < high and (s.reduction_percent - low) > (high - s.reduction_percent)  # skewed
    assert s.ratio_of_means == pytest.approx(LORA_SKEWED.mean() / FULL_SKEWED.mean())
    json.dumps(s.to_dict())
    with pytest.raises(LorascopeError, match="≤ 0"):
        log_ratio_summary(LORA_SKEWED - 0.01, FULL_SKEWED)


def test_hierarchical_log_ratio_interval_seeds_only_is_about_the_t_interval_of_log_ratios():
    ci = hierarchical_log_ratio_interval(LORA_SKEWED, FULL_SKEWED, n_resamples=20_000, seed=1)
    r = np.log(LORA_SKEWED / FULL_SKEWED)
    low, high = t_interval(r)
    assert ci.estimate == pytest.approx(r.mean())
    assert ci.low == pytest.approx(low, abs=0.1 * (high - low)) and ci.high == pytest.approx(high, abs=0.1 * (high - low))
    assert ci.method.startswith("hierarchical bootstrap") and ci.n == 8


def test_hierarchical_log_ratio_interval_adds_sample_noise_and_drops_nonpositive_replicates():
    rng = np.random.default_rng(0)
    reps_l = LORA_SKEWED[:, None] + rng.normal(0, 0.002, (8, 300))
    reps_f = FULL_SKEWED[:, None] + rng.normal(0, 0.002, (8, 300))
    seeds_only = hierarchical_log_ratio_interval(LORA_SKEWED, FULL_SKEWED, seed=2)
    both = hierarchical_log_ratio_interval(LORA_SKEWED, FULL_SKEWED, reps_l, reps_f, seed=2)
    assert both.high - both.low > seeds_only.high - seeds_only.low
    assert "dropped" in both.note  # seed 3's LoRA drift 0.0044 lands ≤ 0 in some replicates
    # Replicates offset as a whole (biased CKA on duplicated samples) are re-centred, not read as drift.
    shifted = hierarchical_log_ratio_interval(LORA_SKEWED, FULL_SKEWED, reps_l - 0.001, reps_f - 0.001, seed=2)
    assert (shifted.low, shifted.high) == pytest.approx((both.low, both.high), rel=1e-12)
    with pytest.raises(LorascopeError, match="> 0"):
        hierarchical_log_ratio_interval(LORA_SKEWED * 0, FULL_SKEWED)
    with pytest.raises(LorascopeError, match="both"):
        hierarchical_log_ratio_interval(LORA_SKEWED, FULL_SKEWED, reps_l, None)


def test_h1b_falls_back_to_the_ratio_of_means_when_a_drift_is_not_positive():
    lora = 0.5 * FULL_DRIFT * JITTER
    lora[2] = -0.001  # debiased CKA can exceed 1
    v = h1b_verdict(lora, FULL_DRIFT)
    assert v.ci_method == "Fieller (t)" and v.details["log_ratio"] is None and "no logarithm" in v.details["note"]
    assert v.estimate == pytest.approx(1 - lora.mean() / FULL_DRIFT.mean())


# ---------------------------------------------------------------- metric differences over seeds and dev examples


def test_crossed_mean_squares_match_a_two_way_anova():
    import pandas as pd
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(4)
    lora = (rng.random((5, 30)) < 0.8).astype(float)
    full = (rng.random((5, 30)) < 0.75).astype(float)
    c = crossed_difference(lora, full)
    seed, example = np.meshgrid(np.arange(5), np.arange(30), indexing="ij")
    frame = pd.DataFrame({"d": (lora - full).ravel(), "seed": seed.ravel(), "example": example.ravel()})
    table = anova_lm(ols("d ~ C(seed) + C(example)", frame).fit())
    ms = table["sum_sq"] / table["df"]
    assert (c.ms_seeds, c.ms_examples, c.ms_residual) == pytest.approx(
        (ms["C(seed)"], ms["C(example)"], ms["Residual"]), rel=1e-9)
    expected = (c.ms_seeds + max(0.0, c.ms_examples - c.ms_residual)) / (5 * 30)
    assert c.se == pytest.approx(np.sqrt(expected)) and c.estimate == pytest.approx((lora - full).mean())


def test_crossed_test_is_the_paired_t_test_when_examples_add_nothing():
    rng = np.random.default_rng(5)
    noise = rng.normal(size=(6, 40))
    noise -= noise.mean(axis=0)  # every example's mean difference is the grand mean: no example effect
    d = rng.normal(0.02, 0.01, size=(6, 1)) + 0.1 * noise
    c = crossed_difference(d, np.zeros_like(d))
    assert c.var_examples == 0 and c.df == 5
    for alternative in ("two-sided", "greater", "less"):
        t = paired_t_test(d.mean(axis=1), alternative=alternative, null=-0.03)
        res = c.test(null=-0.03, alternative=alternative)
        assert res.p_value == pytest.approx(t.p_value, rel=1e-10) and res.statistic == pytest.approx(t.statistic)
    assert c.interval(0.9) == pytest.approx(t_interval(d.mean(axis=1), confidence=0.9))


def test_a_dev_set_that_favours_one_method_widens_the_interval():
    rng = np.random.default_rng(6)
    favour = rng.normal(0, 0.3, size=200)  # the same examples favour LoRA for every seed
    d = rng.normal(0.01, 0.005, size=(8, 1)) + favour[None, :] + rng.normal(0, 0.1, size=(8, 200))
    c = crossed_difference(d, np.zeros_like(d))
    assert c.se > 2 * c.se_seeds_only and c.var_examples > c.var_seeds and c.df > 7
    assert crossed_difference(np.ones((3, 4)), np.ones((3, 4))).test().note.startswith("every per-example difference")
    with pytest.raises(LorascopeError, match="same shape"):
        crossed_difference(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(LorascopeError, match="n_seeds ≥ 2"):
        crossed_difference(np.ones(4), np.ones(4))


def test_h1a_refuses_per_example_scores_of_another_checkpoint():
    lora = (np.random.default_rng(7).random((8, 50)) < 0.9).astype(float)
    full = (np.random.default_rng(8).random((8, 50)) < 0.9).astype(float)
    with pytest.raises(LorascopeError, match="do not average to the per-seed metrics"):
        h1a_verdict(lora.mean(1) + 0.01, full.mean(1), lora_examples=lora, full_examples=full)
    with pytest.raises(LorascopeError, match="both methods"):
        h1a_verdict(lora.mean(1), full.mean(1), lora_examples=lora)


# ---------------------------------------------------------------- seeds for power, as a range


def test_effect_size_interval_inverts_the_noncentral_t():
    deltas = np.array([0.02, 0.05, -0.01, 0.04, 0.03])
    low, high = effect_size_interval(deltas)
    t_obs = deltas.mean() / deltas.std(ddof=1) * np.sqrt(5)
    assert stats.nct.cdf(t_obs, 4, low * np.sqrt(5)) == pytest.approx(0.975, abs=1e-8)
    assert stats.nct.cdf(t_obs, 4, high * np.sqrt(5)) == pytest.approx(0.025, abs=1e-8)
    assert low < deltas.mean() / deltas.std(ddof=1) < high
    assert all(np.isfinite(effect_size_interval(np.array([0.05, 0.051, 0.049, 0.05]))))  # t ≈ 100: scipy's tails


def test_seeds_needed_is_a_range_from_the_effect_size_interval():
    from statsmodels.stats.power import TTestPower

    from lorascope.drift.record import SeedsNeeded
    from lorascope.report.answers import seeds_needed_text

    deltas = np.array([0.02, 0.05, -0.01, 0.04, 0.03])
    info = seeds_needed(deltas, 0.05 / 3)
    low, high = info["effect_size_dz_ci"]
    fewest, most = info["t_range"]
    power = TTestPower().power
    assert power(effect_size=high, nobs=fewest, alpha=0.05 / 3, alternative="larger") >= 0.8
    assert power(effect_size=high, nobs=fewest - 1, alpha=0.05 / 3, alternative="larger") < 0.8
    assert fewest <= info["t"] and (low <= 0) == (most is None)
    text = seeds_needed_text(SeedsNeeded.model_validate(info))
    assert text.startswith(f"{fewest} to ") and "CI of d_z" in text and "exact test needs ≥ 6" in text
    sure = seeds_needed(np.array([0.05, 0.06, 0.04, 0.05, 0.055, 0.045, 0.05, 0.052]), 0.01)
    assert sure["t_range"][1] is not None and sure["t_range"][0] <= sure["t"] <= sure["t_range"][1]
    # A record written before the range existed states the single t count.
    older = SeedsNeeded.model_validate({"t": 7, "power": 0.8, "exact_floor": 5})
    assert seeds_needed_text(older) == "7 (paired t, 80% power); exact test needs ≥ 5"
