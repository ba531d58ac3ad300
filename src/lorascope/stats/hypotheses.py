"""Verdicts for the study's pre-registered hypotheses, from per-seed results paired by seed.

H1a: LoRA reaches the task metric of full fine-tuning "within a margin" (default 3 points). The
     protocol's wording is one-sided — LoRA may be better — so the default is non-inferiority
     (mean LoRA − full > −margin); the two-sided equivalence TOST is reported beside it. Given the
     per-example scores of every run, the test and interval include the dev set's sampling error
     (seeds × examples, :mod:`lorascope.stats.crossed`); from per-seed metrics alone they treat the
     dev examples as fixed, and the verdict says so.
H1b: LoRA moves representations at least ``min_reduction`` (default 20%) less than full
     fine-tuning, on the log scale: the geometric mean over seeds of drift(LoRA) / drift(full FT)
     is at most 1 − min_reduction. With ``min_reduction = 0`` this is the plain "LoRA drifts less
     than full FT". Drift is positive and skewed across seeds, so per-seed log ratios are what
     the t-test and the sign-flip test see (:mod:`lorascope.stats.logratio`).

Each verdict is decided by one pre-chosen test (the protocol's paired t-test by default); the
other test of the same null (the exact sign-flip test) is always reported with its own status,
and disagreement is flagged (see :mod:`lorascope.stats.verdict`). A verdict decided here alone is
Bonferroni-adjusted over ``n_comparisons``; a study adjusts all of its verdicts together by Holm
(:mod:`lorascope.stats.family`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.stats._arrays import as_sample, paired_deltas
from lorascope.stats.bootstrap import bootstrap_ci
from lorascope.stats.crossed import crossed_difference
from lorascope.stats.logratio import log_ratio_summary, positive
from lorascope.stats.paired import paired_t_test, t_interval
from lorascope.stats.permutation import sign_flip_test
from lorascope.stats.power import exact_floor_pairs, seeds_needed
from lorascope.stats.ratio import fieller_interval
from lorascope.stats.result import Alternative, TestResult
from lorascope.stats.verdict import Verdict, decide

TestName = Literal["t", "sign-flip"]
CiMethod = Literal["t", "bootstrap"]
H1aKind = Literal["non-inferiority", "equivalence"]
# (which test, alternative, null) -> the one-sided test of mean(claim deltas) against null.
Runner = Callable[[TestName, Alternative, float], TestResult]


def one_sided(deltas: np.ndarray, null: float, alternative: Alternative, test: TestName, seed: int) -> TestResult:
    """The chosen paired test of mean(deltas) against ``null`` in one direction."""
    if test == "sign-flip":
        return sign_flip_test(deltas, alternative=alternative, null=null, seed=seed)
    return paired_t_test(deltas, alternative=alternative, null=null)


def _combine_tost(lo: TestResult, hi: TestResult, margin: float, statistic: float) -> TestResult:
    """Two one-sided tests: equivalence is shown only when both reject, so p is the larger one."""
    floors = [r.min_attainable_p for r in (lo, hi) if r.min_attainable_p is not None]
    notes = "; ".join(f"{side}: {r.note}" for side, r in (("lower", lo), ("upper", hi)) if r.note)
    return TestResult(
        test=f"TOST, two one-sided {lo.test} tests, margin ±{margin:g}",
        n=lo.n,
        statistic=statistic,
        p_value=math.nan if math.isnan(lo.p_value) or math.isnan(hi.p_value) else max(lo.p_value, hi.p_value),
        alternative="equivalence",
        min_attainable_p=max(floors) if floors else None,
        n_resamples=lo.n_resamples,
        note=notes,
    )


def _check_common(test: str, ci_method: str, confidence: float) -> None:
    if test not in ("sign-flip", "t"):
        raise LorascopeError(f"test must be 'sign-flip' or 't'; got {test!r}")
    if ci_method not in ("t", "bootstrap"):
        raise LorascopeError(f"ci_method must be 't' or 'bootstrap'; got {ci_method!r}")
    if not 0.0 < confidence < 1.0:
        raise LorascopeError(f"confidence must be in (0, 1); got {confidence}")


def _decide(
    hypothesis: str, claim: str, deltas: np.ndarray, meets: bool, estimate: float, interval: tuple[float, float, str],
    estimate_text: str, *, test: TestName, alpha: float, n_comparisons: int, confidence: float, seed: int,
    run: Runner | None = None, claim_tests: dict[TestName, TestResult] | None = None,
    extra: dict[str, TestResult] | None = None, uncertainty: str = "seeds", details: dict[str, Any] | None = None,
) -> Verdict:
    """Run both tests of "mean(deltas) > 0" (or the given claim tests), then decide at Bonferroni over ``n_comparisons``.

    Args:
        deltas: float array [n], per-seed differences oriented so that the claim is mean > 0.
        run: the tests to use instead of the paired ones on ``deltas`` (e.g. the seeds × examples test).
    """
    if n_comparisons < 1:
        raise LorascopeError(f"n_comparisons must be at least 1; got {n_comparisons}")

    def default(which: TestName, alternative: Alternative, null: float) -> TestResult:
        return one_sided(deltas, null, alternative, which, seed)

    runner = run or default
    other: TestName = "sign-flip" if test == "t" else "t"
    tests, reverse = {}, {}
    for which in (test, other):
        tests[which] = (claim_tests or {}).get(which) or runner(which, "greater", 0.0)
        reverse[which] = runner(which, "less", 0.0)
    low, high, ci_name = interval
    raw = Verdict(
        hypothesis=hypothesis, claim=claim, status="inconclusive", estimate=estimate, ci_low=float(low),
        ci_high=float(high), ci_method=ci_name, confidence=confidence, n=int(deltas.shape[0]),
        p_value=tests[test].p_value, test=tests[test], alpha=alpha, n_comparisons=n_comparisons,
        corrected_alpha=alpha / n_comparisons, message="", secondary=tests[other],
        reverse_p_value=reverse[test].p_value, secondary_reverse_p_value=reverse[other].p_value,
        seeds_needed=seeds_needed(deltas, alpha / n_comparisons, confidence=confidence), extra=extra or {},
        meets_claim=bool(meets), estimate_text=estimate_text, uncertainty=uncertainty, details=details or {},
    )

    def bonferroni(p: float) -> float:
        return math.nan if math.isnan(p) else min(1.0, p * n_comparisons)

    return decide(
        raw, p_adjusted=bonferroni(raw.p_value), reverse_p_adjusted=bonferroni(raw.reverse_p_value),
        secondary_p_adjusted=bonferroni(raw.secondary_p_value),
        secondary_reverse_p_adjusted=bonferroni(raw.secondary_reverse_p_value), size=n_comparisons,
        correction="bonferroni" if n_comparisons > 1 else "none", pairs_needed_exact=exact_floor_pairs(alpha / n_comparisons),
        family={"method": "bonferroni" if n_comparisons > 1 else "none", "size": n_comparisons, "members": [hypothesis],
                "complete": n_comparisons == 1, "note": "decided alone"},
    )


def _example_scores(examples: Any, per_seed: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(examples, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != per_seed.shape[0]:
        raise LorascopeError(f"{name}_examples must be [n_seeds={per_seed.shape[0]}, n_examples]; got shape {arr.shape}")
    means = arr.mean(axis=1)
    if not np.allclose(means, per_seed, rtol=0.0, atol=1e-6):
        worst = int(np.argmax(np.abs(means - per_seed)))
        raise LorascopeError(
            f"{name}_examples do not average to the per-seed metrics (seed position {worst}: {means[worst]:.6f} vs "
            f"{per_seed[worst]:.6f}): the per-example scores are of another checkpoint or another metric"
        )
    return arr


def h1a_verdict(
    lora: Any,
    full: Any,
    *,
    margin: float = 0.03,
    kind: H1aKind = "non-inferiority",
    test: TestName = "t",
    alpha: float = 0.05,
    n_comparisons: int = 1,
    confidence: float = 0.95,
    ci_method: CiMethod = "t",
    seed: int = 0,
    lora_examples: Any | None = None,
    full_examples: Any | None = None,
) -> Verdict:
    """H1a: LoRA's task metric is within ``margin`` of full fine-tuning's.

    The deltas are lora_i − full_i. "non-inferiority" (default, the protocol's "within 3 points
    of") shows mean > −margin; "equivalence" shows −margin < mean < margin by two one-sided tests
    (TOST: p = max of the two). The equivalence TOST is always reported in ``extra``.

    With ``lora_examples`` and ``full_examples`` the "t" test and interval are the seeds × dev
    examples ones (:func:`lorascope.stats.crossed.crossed_difference`): p reflects that the dev set
    is a finite sample. The exact sign-flip test stays across seeds (it has no example level).

    Args:
        lora: float array [n], LoRA's metric per seed, as a fraction in [-1, 1] (accuracy 0.912,
            not 91.2), so that margin 0.03 means 3 percentage points.
        full: float array [n], full fine-tuning's metric for the same seeds, same order.
        margin: margin in the metric's units (> 0).
        kind: "non-inferiority" or "equivalence".
        test: primary test, "t" (default) or "sign-flip" (exact permutation).
        alpha: family-wise alpha.
        n_comparisons: family size alpha is Bonferroni-split over when this verdict is decided alone.
        confidence: coverage of the reported interval for the mean difference.
        ci_method: "t" (Student or seeds × examples interval; default: bootstrap intervals from a few
            seeds undercover) or "bootstrap" (BCa over seeds).
        seed: seed for Monte-Carlo sign flips and the bootstrap.
        lora_examples: float array [n, n_examples] of per-example scores whose row means are ``lora``
            (e.g. 0/1 correctness for accuracy), or None.
        full_examples: the same for full fine-tuning, same examples in the same order.

    Returns:
        Verdict with estimate = mean(lora − full).

    Raises:
        LorascopeError: unpaired lengths, n < 2, NaN, metrics outside [-1, 1], per-example scores that
            do not average to the per-seed metrics, bad settings.
    """
    _check_common(test, ci_method, confidence)
    if kind not in ("equivalence", "non-inferiority"):
        raise LorascopeError(f"kind must be 'equivalence' or 'non-inferiority'; got {kind!r}")
    if not margin > 0:
        raise LorascopeError(f"margin must be positive; got {margin}")
    for name, values in (("lora", lora), ("full", full)):
        arr = as_sample(values, name, min_n=2)
        if np.any(np.abs(arr) > 1.0):
            raise LorascopeError(
                f"{name} metrics must be fractions in [-1, 1] (e.g. accuracy 0.912, not 91.2) so that the "
                f"margin {margin:g} is in the same units; got max |value| {np.max(np.abs(arr)):g}"
            )
    deltas = paired_deltas(lora, full, ("lora", "full"), min_n=2)
    estimate = float(deltas.mean())
    if (lora_examples is None) != (full_examples is None):
        raise LorascopeError("give per-example scores for both methods or for neither")
    crossed = None
    if lora_examples is not None:
        crossed = crossed_difference(_example_scores(lora_examples, as_sample(lora, "lora"), "lora"),
                                     _example_scores(full_examples, as_sample(full, "full"), "full"))

    def run(which: TestName, alternative: Alternative, null: float) -> TestResult:
        # Tests of mean(lora − full) − null, where the claim deltas are lora − full + margin.
        if which == "t" and crossed is not None:
            return crossed.test(null=null - margin, alternative=alternative)
        return one_sided(deltas + margin, null, alternative, which, seed)

    def tost(which: TestName) -> TestResult:
        lo = run(which, "greater", 0.0)
        return _combine_tost(lo, run(which, "less", 2 * margin), margin, estimate)

    claim_tests: dict[TestName, TestResult] | None = None
    if kind == "equivalence":
        claim_tests = {"t": tost("t"), "sign-flip": tost("sign-flip")}
    if ci_method == "bootstrap":
        ci = bootstrap_ci(deltas, confidence=confidence, seed=seed)
        low, high, ci_name = ci.low, ci.high, f"bootstrap {ci.method}"
    elif crossed is not None:
        low, high = crossed.interval(confidence)
        ci_name = "t over seeds × dev examples"
    else:
        low, high = t_interval(deltas, confidence=confidence)
        ci_name = "t"
    meets = abs(estimate) < margin if kind == "equivalence" else estimate > -margin
    claim = (f"LoRA's metric is within ±{margin:g} of full fine-tuning's" if kind == "equivalence"
             else f"LoRA's metric is at most {margin:g} below full fine-tuning's (non-inferiority)")
    over = (f"over seeds and {crossed.n_examples} dev examples" if crossed is not None
            else "over seeds only: the dev examples are treated as fixed")
    estimate_text = (f"mean LoRA − full FT = {estimate:+.4f} ({confidence:.0%} CI {low:+.4f} to {high:+.4f}, {over}), "
                     f"margin {'±' if kind == 'equivalence' else '−'}{margin:g}")
    details = {"crossed": crossed.to_dict(confidence)} if crossed is not None else {
        "crossed": None, "note": "no per-example scores: the test and interval treat the dev examples as fixed"}
    return _decide(
        "H1a", claim, deltas + margin, meets, estimate, (low, high, ci_name), estimate_text, test=test, alpha=alpha,
        n_comparisons=n_comparisons, confidence=confidence, seed=seed, run=run, claim_tests=claim_tests,
        extra={"equivalence": tost(test)} if kind == "non-inferiority" else {},
        uncertainty="seeds and dev examples" if crossed is not None else "seeds",
        details=details,
    )


def h1b_verdict(
    drift_lora: Any,
    drift_full: Any,
    *,
    min_reduction: float = 0.2,
    test: TestName = "t",
    alpha: float = 0.05,
    n_comparisons: int = 1,
    confidence: float = 0.95,
    ci_method: CiMethod = "t",
    seed: int = 0,
    hypothesis: str = "H1b",
) -> Verdict:
    """H1b: LoRA's drift is at least ``min_reduction`` lower than full fine-tuning's, on the log scale.

    With r_i = log(lora_i / full_i), the claim is mean(r) < log(1 − min_reduction), i.e. the
    geometric-mean ratio LoRA / full is below 1 − min_reduction; it is tested one-sided on
    e_i = log(1 − min_reduction) − r_i (claim: mean(e) > 0). The estimate is the reduction
    1 − exp(mean r) (Δ% / 100) with the t interval of mean r carried back by exp, so it is
    asymmetric. When a drift is ≤ 0 (possible for debiased CKA) there is no logarithm: the verdict
    falls back to the arithmetic ratio of mean drifts (e_i = (1 − min_reduction) · full_i − lora_i,
    Fieller interval) and ``details`` says so.

    Args:
        drift_lora: float array [n], mean drift (1 − CKA, averaged over layers) of LoRA per seed.
        drift_full: float array [n], the same for full fine-tuning, same seeds in the same order.
        min_reduction: the relative reduction claimed, in [0, 1); 0 tests "LoRA drifts less".
        test: primary test, "t" (paired t-test, default) or "sign-flip" (exact permutation).
        alpha: family-wise alpha.
        n_comparisons: family size alpha is Bonferroni-split over when this verdict is decided alone.
        confidence: coverage of the reported interval for the reduction.
        ci_method: "t" (default) or "bootstrap" (paired BCa of the same statistic).
        seed: seed for Monte-Carlo sign flips and the bootstrap.
        hypothesis: the label the verdict carries (e.g. "H1b (debiased)").

    Returns:
        Verdict with estimate = 1 − geometric-mean ratio (or 1 − ratio of means in the fallback).

    Raises:
        LorascopeError: unpaired lengths, n < 2, NaN, mean full-FT drift ≤ 0, bad settings.
    """
    _check_common(test, ci_method, confidence)
    if not 0.0 <= min_reduction < 1.0:
        raise LorascopeError(f"min_reduction must be in [0, 1); got {min_reduction}")
    lora = as_sample(drift_lora, "drift_lora", min_n=2)
    full = as_sample(drift_full, "drift_full", min_n=2)
    if lora.shape != full.shape:
        raise LorascopeError(
            "drift_lora and drift_full must be paired by seed (same length); "
            f"got {lora.shape[0]} and {full.shape[0]}"
        )
    if full.mean() <= 0.0:
        raise LorascopeError(
            f"mean full fine-tuning drift must be positive to express a relative reduction; got {full.mean():g}"
        )
    claim = (f"LoRA's drift is at least {min_reduction:.0%} lower than full fine-tuning's" if min_reduction > 0
             else "LoRA's drift is lower than full fine-tuning's")
    target = f"claim {'≥ ' + format(min_reduction, '.0%') if min_reduction > 0 else '> 0%'}"
    if positive(lora, full):
        summary = log_ratio_summary(lora, full, confidence=confidence, seed=seed)
        r = np.log(lora) - np.log(full)
        estimate = 1.0 - summary.gm_ratio
        if ci_method == "t":
            r_low, r_high = np.log(summary.gm_ratio_ci[0]), np.log(summary.gm_ratio_ci[1])
            ci_name = "t on per-seed log ratios"
        else:
            ci = bootstrap_ci(r, confidence=confidence, seed=seed)
            r_low, r_high, ci_name = ci.low, ci.high, f"bootstrap {ci.method} on per-seed log ratios"
        low, high = 1.0 - float(np.exp(r_high)), 1.0 - float(np.exp(r_low))
        estimate_text = (f"LoRA drift is {estimate:.1%} lower than full FT (geometric mean of {lora.shape[0]} per-seed "
                         f"ratios {summary.gm_ratio:.3f}; {confidence:.0%} CI of the reduction {_pct(low)} to "
                         f"{_pct(high)}), {target}")
        claim += " (geometric mean over seeds of the per-seed ratio)"
        return _decide(
            hypothesis, claim, float(np.log1p(-min_reduction)) - r, estimate > min_reduction, estimate,
            (low, high, ci_name), estimate_text, test=test, alpha=alpha, n_comparisons=n_comparisons,
            confidence=confidence, seed=seed, details={"log_ratio": summary.to_dict()},
        )
    estimate = float(1.0 - lora.mean() / full.mean())
    if ci_method == "t":
        q_low, q_high = fieller_interval(lora, full, confidence=confidence)
        low, high, ci_name = 1.0 - q_high, 1.0 - q_low, "Fieller (t)"
    else:
        def reduction(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.asarray(1.0 - np.mean(a, axis=axis) / np.mean(b, axis=axis))

        ci = bootstrap_ci(lora, full, statistic=reduction, confidence=confidence, seed=seed)
        low, high, ci_name = ci.low, ci.high, f"paired bootstrap {ci.method}"
    estimate_text = (f"LoRA drift is {estimate:.1%} lower than full FT (ratio of mean drifts; {confidence:.0%} CI "
                     f"{_pct(low)} to {_pct(high)}), {target}")
    return _decide(
        hypothesis, claim + " (ratio of mean drifts)", (1.0 - min_reduction) * full - lora, estimate > min_reduction,
        estimate, (low, high, ci_name), estimate_text, test=test, alpha=alpha, n_comparisons=n_comparisons,
        confidence=confidence, seed=seed,
        details={"log_ratio": None, "note": "a drift ≤ 0 has no logarithm: the ratio of arithmetic mean drifts is tested"},
    )


def _pct(x: float) -> str:
    return "unbounded" if math.isnan(x) or math.isinf(x) else f"{x:.1%}"
