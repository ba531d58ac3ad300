"""Verdicts for the study's pre-registered hypotheses, from per-seed results paired by seed.

H1a: LoRA reaches the task metric of full fine-tuning "within a margin" (default 3 points). The
     protocol's wording is one-sided — LoRA may be better — so the default is non-inferiority
     (mean LoRA − full > −margin); the two-sided equivalence TOST is reported beside it.
H1b: LoRA moves representations at least ``min_reduction`` (default 20%) less than full
     fine-tuning: mean drift(LoRA) ≤ (1 − min_reduction) · mean drift(full FT). With
     ``min_reduction = 0`` this is the plain "LoRA drifts less than full FT".

Each verdict is decided by one pre-chosen test (the protocol's paired t-test by default) at a
Bonferroni-corrected alpha; the other test of the same null (the exact sign-flip test) is always
reported with its own status, and disagreement is flagged (see :mod:`lorascope.stats.verdict`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.stats._arrays import as_sample, paired_deltas
from lorascope.stats.bootstrap import bootstrap_ci
from lorascope.stats.corrections import bonferroni_alpha
from lorascope.stats.paired import paired_t_test, t_interval
from lorascope.stats.permutation import sign_flip_test
from lorascope.stats.power import exact_floor_pairs, seeds_needed
from lorascope.stats.ratio import fieller_interval
from lorascope.stats.result import Alternative, TestResult
from lorascope.stats.verdict import Verdict, agree, message, status_of

TestName = Literal["t", "sign-flip"]
CiMethod = Literal["t", "bootstrap"]
H1aKind = Literal["non-inferiority", "equivalence"]


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
    claim_tests: dict[TestName, TestResult] | None = None, extra: dict[str, TestResult] | None = None,
) -> Verdict:
    """Run both tests of "mean(deltas) > 0" (or the given claim tests) and assemble the verdict."""
    corrected = bonferroni_alpha(alpha, n_comparisons)
    other: TestName = "sign-flip" if test == "t" else "t"
    statuses, tests, reverse = {}, {}, {}
    for which in (test, other):
        tests[which] = (claim_tests or {}).get(which) or one_sided(deltas, 0.0, "greater", which, seed)
        reverse[which] = one_sided(deltas, 0.0, "less", which, seed)
        statuses[which] = status_of(tests[which], reverse[which], corrected, meets)
    low, high, ci_name = interval
    text = message(hypothesis, statuses[test], estimate_text, tests[test], tests[other], statuses[other], alpha,
                   n_comparisons, corrected, exact_floor_pairs(corrected))
    return Verdict(
        hypothesis=hypothesis, claim=claim, status=statuses[test], estimate=estimate, ci_low=float(low),
        ci_high=float(high), ci_method=ci_name, confidence=confidence, n=int(deltas.shape[0]),
        p_value=tests[test].p_value, test=tests[test], alpha=alpha, n_comparisons=n_comparisons,
        corrected_alpha=corrected, message=text, secondary=tests[other], secondary_status=statuses[other],
        tests_agree=agree(statuses[test], statuses[other]), reverse_p_value=reverse[test].p_value,
        secondary_reverse_p_value=reverse[other].p_value,
        seeds_needed=seeds_needed(deltas, corrected), extra=extra or {},
    )


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
) -> Verdict:
    """H1a: LoRA's task metric is within ``margin`` of full fine-tuning's.

    The deltas are lora_i − full_i. "non-inferiority" (default, the protocol's "within 3 points
    of") shows mean > −margin; "equivalence" shows −margin < mean < margin by two one-sided tests
    (TOST: p = max of the two). The equivalence TOST is always reported in ``extra``.

    Args:
        lora: float array [n], LoRA's metric per seed, as a fraction in [-1, 1] (accuracy 0.912,
            not 91.2), so that margin 0.03 means 3 percentage points.
        full: float array [n], full fine-tuning's metric for the same seeds, same order.
        margin: margin in the metric's units (> 0).
        kind: "non-inferiority" or "equivalence".
        test: primary test, "t" (paired t-test, default) or "sign-flip" (exact permutation).
        alpha: family-wise alpha.
        n_comparisons: number of tasks (or hypotheses) alpha is Bonferroni-split over.
        confidence: coverage of the reported interval for the mean difference.
        ci_method: "t" (Student interval; default: bootstrap intervals from a few seeds
            undercover) or "bootstrap" (BCa).
        seed: seed for Monte-Carlo sign flips and the bootstrap.

    Returns:
        Verdict with estimate = mean(lora − full).

    Raises:
        LorascopeError: unpaired lengths, n < 2, NaN, metrics outside [-1, 1], bad settings.
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

    def tost(which: TestName) -> TestResult:
        lo = one_sided(deltas, -margin, "greater", which, seed)
        return _combine_tost(lo, one_sided(deltas, margin, "less", which, seed), margin, estimate)

    claim_tests: dict[TestName, TestResult] | None = None
    if kind == "equivalence":
        claim_tests = {"t": tost("t"), "sign-flip": tost("sign-flip")}
    if ci_method == "t":
        low, high = t_interval(deltas, confidence=confidence)
        ci_name = "t"
    else:
        ci = bootstrap_ci(deltas, confidence=confidence, seed=seed)
        low, high, ci_name = ci.low, ci.high, f"bootstrap {ci.method}"
    meets = abs(estimate) < margin if kind == "equivalence" else estimate > -margin
    claim = (f"LoRA's metric is within ±{margin:g} of full fine-tuning's" if kind == "equivalence"
             else f"LoRA's metric is at most {margin:g} below full fine-tuning's (non-inferiority)")
    estimate_text = (f"mean LoRA − full FT = {estimate:+.4f} ({confidence:.0%} CI {low:+.4f} to {high:+.4f}), "
                     f"margin {'±' if kind == 'equivalence' else '−'}{margin:g}")
    return _decide(
        "H1a", claim, deltas + margin, meets, estimate, (low, high, ci_name), estimate_text, test=test, alpha=alpha,
        n_comparisons=n_comparisons, confidence=confidence, seed=seed, claim_tests=claim_tests,
        extra={"equivalence": tost(test)} if kind == "non-inferiority" else {},
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
    """H1b: LoRA's drift is at least ``min_reduction`` lower than full fine-tuning's.

    Tested one-sided on the per-seed differences e_i = (1 − min_reduction) · full_i − lora_i:
    mean(e) > 0 is exactly mean(lora) < (1 − min_reduction) · mean(full), the claim about the
    ratio of mean drifts, without dividing by a noisy per-seed drift.

    Args:
        drift_lora: float array [n], mean drift (1 − CKA, averaged over layers) of LoRA per seed.
        drift_full: float array [n], the same for full fine-tuning, same seeds in the same order.
        min_reduction: the relative reduction claimed, in [0, 1); 0 tests "LoRA drifts less".
        test: primary test, "t" (paired t-test, default) or "sign-flip" (exact permutation).
        alpha: family-wise alpha.
        n_comparisons: number of tasks (or hypotheses) alpha is Bonferroni-split over.
        confidence: coverage of the reported interval for the reduction.
        ci_method: "t" (Fieller interval for the ratio of paired means, matching the t-test;
            default) or "bootstrap" (paired BCa of the ratio statistic).
        seed: seed for Monte-Carlo sign flips and the bootstrap.
        hypothesis: the label the verdict carries (e.g. "H1b (debiased)").

    Returns:
        Verdict with estimate = 1 − mean(drift_lora) / mean(drift_full).

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
    estimate = float(1.0 - lora.mean() / full.mean())
    if ci_method == "t":
        r_low, r_high = fieller_interval(lora, full, confidence=confidence)
        low, high, ci_name = 1.0 - r_high, 1.0 - r_low, "Fieller (t)"
    else:
        def reduction(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.asarray(1.0 - np.mean(a, axis=axis) / np.mean(b, axis=axis))

        ci = bootstrap_ci(lora, full, statistic=reduction, confidence=confidence, seed=seed)
        low, high, ci_name = ci.low, ci.high, f"paired bootstrap {ci.method}"
    claim = (f"LoRA's mean drift is at least {min_reduction:.0%} lower than full fine-tuning's" if min_reduction > 0
             else "LoRA's mean drift is lower than full fine-tuning's")
    estimate_text = (f"LoRA drift is {estimate:.1%} lower than full FT ({confidence:.0%} CI {_pct(low)} to "
                     f"{_pct(high)}), claim {'≥ ' + format(min_reduction, '.0%') if min_reduction > 0 else '> 0%'}")
    return _decide(
        hypothesis, claim, (1.0 - min_reduction) * full - lora, estimate > min_reduction, estimate,
        (low, high, ci_name), estimate_text, test=test, alpha=alpha, n_comparisons=n_comparisons,
        confidence=confidence, seed=seed,
    )


def _pct(x: float) -> str:
    return "unbounded" if math.isnan(x) or math.isinf(x) else f"{x:.1%}"
