"""Verdicts for the study's pre-registered hypotheses, from per-seed results paired by seed.

H1a: LoRA reaches the task metric of full fine-tuning within a margin (default ±3 points).
H1b: LoRA moves representations at least ``min_reduction`` (default 20%) less than full
     fine-tuning: mean drift(LoRA) ≤ (1 − min_reduction) · mean drift(full FT).

Each verdict is decided by one pre-chosen test at a multiplicity-corrected alpha (Bonferroni over
``n_comparisons``, e.g. 3 tasks). The default test is the exact paired sign-flip test, which needs
no normality but has a floor on p: with n seed pairs a one-sided p cannot go below 2^-n. When that
floor is above the corrected alpha no data could support the hypothesis, and the verdict says
"underpowered" rather than "not supported". The t-test of the same null is reported beside it.

Statuses:
    supported      p ≤ corrected alpha.
    underpowered   the test's smallest attainable p exceeds the corrected alpha.
    inconclusive   p > corrected alpha but the point estimate satisfies the claim (or p undefined).
    not supported  p > corrected alpha and the point estimate does not satisfy the claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.stats._arrays import as_sample, paired_deltas
from lorascope.stats.bootstrap import bootstrap_ci
from lorascope.stats.corrections import bonferroni_alpha
from lorascope.stats.paired import paired_t_test, t_interval
from lorascope.stats.permutation import min_attainable_p, sign_flip_test
from lorascope.stats.ratio import fieller_interval
from lorascope.stats.result import Alternative, TestResult, json_number

TestName = Literal["sign-flip", "t"]
CiMethod = Literal["t", "bootstrap"]
Status = Literal["supported", "not supported", "underpowered", "inconclusive"]


@dataclass(frozen=True)
class Verdict:
    """The decision on one hypothesis and everything needed to report it.

    Attributes:
        hypothesis: "H1a" or "H1b".
        claim: the claim in words, with its thresholds.
        status: "supported", "not supported", "underpowered" or "inconclusive".
        estimate: point estimate (H1a: mean LoRA − full FT metric; H1b: relative drift reduction
            1 − mean(LoRA drift) / mean(full FT drift)).
        ci_low: lower bound of the ``confidence`` interval for the estimate.
        ci_high: upper bound.
        ci_method: how the interval was made.
        confidence: nominal coverage, e.g. 0.95.
        n: seed pairs.
        p_value: exact p of the deciding test (as computed; NaN if undefined).
        test: the deciding test.
        alpha: family-wise alpha.
        n_comparisons: size of the family (e.g. tasks) the alpha is split over.
        corrected_alpha: alpha / n_comparisons, the level p is compared with.
        message: one-paragraph reading of the result.
        secondary: the other test of the same null, reported but not used for the status.
    """

    hypothesis: str
    claim: str
    status: Status
    estimate: float
    ci_low: float
    ci_high: float
    ci_method: str
    confidence: float
    n: int
    p_value: float
    test: TestResult
    alpha: float
    n_comparisons: int
    corrected_alpha: float
    message: str
    secondary: TestResult | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the tests nested; NaN and inf become None."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            out[key] = value.to_dict() if isinstance(value, TestResult) else json_number(value)
        return out


def _one_sided(deltas: np.ndarray, null: float, alternative: Alternative, test: TestName, seed: int) -> TestResult:
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


def _pairs_needed(corrected_alpha: float, alternative: str) -> int:
    """Fewest non-zero pairs whose sign-flip floor is at or below the corrected alpha."""
    k = 1
    while min_attainable_p(k, alternative) > corrected_alpha:
        k += 1
    return k


def _status(test: TestResult, corrected_alpha: float, meets_claim: bool) -> Status:
    if test.min_attainable_p is not None and test.min_attainable_p > corrected_alpha:
        return "underpowered"
    if math.isnan(test.p_value):
        return "inconclusive"
    if test.p_value <= corrected_alpha:
        return "supported"
    return "inconclusive" if meets_claim else "not supported"


def _alpha_text(alpha: float, m: int, corrected: float) -> str:
    return f"{corrected:.4g}" if m == 1 else f"{corrected:.4g} ({alpha:g}/{m}, Bonferroni)"


def _message(
    hyp: str, status: Status, estimate_text: str, test: TestResult, alpha: float, m: int, corrected: float
) -> str:
    alpha_text = _alpha_text(alpha, m, corrected)
    p_text = "undefined" if math.isnan(test.p_value) else f"{test.p_value:.4g}"
    base = f"{hyp} {status}: {estimate_text}; {test.test}, n = {test.n} seed pairs, p = {p_text}"
    if status == "underpowered":
        one_sided = "two-sided" if test.alternative == "two-sided" else "greater"
        need = _pairs_needed(corrected, one_sided)
        return (
            f"{base}. With n = {test.n} pairs this test cannot give p below {test.min_attainable_p:.4g}, "
            f"which exceeds the corrected alpha {alpha_text}: no outcome could be significant. "
            f"At least {need} non-zero seed pairs are needed."
        )
    if status == "supported":
        return f"{base} ≤ corrected alpha {alpha_text}."
    if math.isnan(test.p_value):
        return f"{base}: {test.note or 'the test is undefined for these data'}."
    if status == "inconclusive":
        return (
            f"{base} > corrected alpha {alpha_text}: the estimate points the claimed way but is not significant."
        )
    return f"{base} > corrected alpha {alpha_text}: the estimate does not meet the claim."


def _check_common(test: str, ci_method: str, confidence: float) -> None:
    if test not in ("sign-flip", "t"):
        raise LorascopeError(f"test must be 'sign-flip' or 't'; got {test!r}")
    if ci_method not in ("t", "bootstrap"):
        raise LorascopeError(f"ci_method must be 't' or 'bootstrap'; got {ci_method!r}")
    if not 0.0 < confidence < 1.0:
        raise LorascopeError(f"confidence must be in (0, 1); got {confidence}")


def h1a_verdict(
    lora: Any,
    full: Any,
    *,
    margin: float = 0.03,
    kind: Literal["equivalence", "non-inferiority"] = "equivalence",
    test: TestName = "sign-flip",
    alpha: float = 0.05,
    n_comparisons: int = 1,
    confidence: float = 0.95,
    ci_method: CiMethod = "t",
    seed: int = 0,
) -> Verdict:
    """H1a: LoRA's task metric is within ``margin`` of full fine-tuning's.

    The deltas are lora_i − full_i. "equivalence" (default) shows −margin < mean < margin by two
    one-sided tests (TOST: p = max of the two); "non-inferiority" shows only mean > −margin.

    Args:
        lora: float array [n], LoRA's metric per seed, as a fraction in [-1, 1] (accuracy 0.912,
            not 91.2), so that margin 0.03 means 3 percentage points.
        full: float array [n], full fine-tuning's metric for the same seeds, same order.
        margin: equivalence margin in the metric's units (> 0).
        kind: "equivalence" or "non-inferiority".
        test: "sign-flip" (exact permutation, default) or "t" (paired t-test).
        alpha: family-wise alpha.
        n_comparisons: number of tasks (or hypotheses) alpha is Bonferroni-split over.
        confidence: coverage of the reported interval for the mean difference.
        ci_method: "t" (Student interval; default, as bootstrap intervals from a few seeds are
            too narrow) or "bootstrap" (BCa).
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
    corrected = bonferroni_alpha(alpha, n_comparisons)
    other: TestName = "t" if test == "sign-flip" else "sign-flip"

    def run(which: TestName) -> TestResult:
        lo = _one_sided(deltas, -margin, "greater", which, seed)
        if kind == "non-inferiority":
            return lo
        return _combine_tost(lo, _one_sided(deltas, margin, "less", which, seed), margin, estimate)

    primary, secondary = run(test), run(other)
    if ci_method == "t":
        low, high = t_interval(deltas, confidence=confidence)
        ci_name = "t"
    else:
        ci = bootstrap_ci(deltas, confidence=confidence, seed=seed)
        low, high, ci_name = ci.low, ci.high, f"bootstrap {ci.method}"
    meets = abs(estimate) < margin if kind == "equivalence" else estimate > -margin
    status = _status(primary, corrected, meets)
    claim = (
        f"LoRA's metric is within ±{margin:g} of full fine-tuning's"
        if kind == "equivalence"
        else f"LoRA's metric is at most {margin:g} below full fine-tuning's"
    )
    estimate_text = (
        f"mean LoRA − full FT = {estimate:+.4f} ({confidence:.0%} CI {low:+.4f} to {high:+.4f}), "
        f"margin ±{margin:g}"
    )
    return Verdict(
        hypothesis="H1a", claim=claim, status=status, estimate=estimate, ci_low=float(low), ci_high=float(high),
        ci_method=ci_name, confidence=confidence, n=int(deltas.shape[0]), p_value=primary.p_value, test=primary,
        alpha=alpha, n_comparisons=n_comparisons, corrected_alpha=corrected,
        message=_message("H1a", status, estimate_text, primary, alpha, n_comparisons, corrected),
        secondary=secondary,
    )


def h1b_verdict(
    drift_lora: Any,
    drift_full: Any,
    *,
    min_reduction: float = 0.2,
    test: TestName = "sign-flip",
    alpha: float = 0.05,
    n_comparisons: int = 1,
    confidence: float = 0.95,
    ci_method: CiMethod = "t",
    seed: int = 0,
) -> Verdict:
    """H1b: LoRA's drift is at least ``min_reduction`` lower than full fine-tuning's.

    Tested one-sided on the per-seed differences e_i = (1 − min_reduction) · full_i − lora_i:
    mean(e) > 0 is exactly mean(lora) < (1 − min_reduction) · mean(full), the claim about the
    ratio of mean drifts, without dividing by a noisy per-seed drift.

    Args:
        drift_lora: float array [n], mean drift (1 − CKA, averaged over layers) of LoRA per seed.
        drift_full: float array [n], the same for full fine-tuning, same seeds in the same order.
        min_reduction: the relative reduction claimed, in [0, 1).
        test: "sign-flip" (exact permutation, default) or "t" (paired t-test).
        alpha: family-wise alpha.
        n_comparisons: number of tasks (or hypotheses) alpha is Bonferroni-split over.
        confidence: coverage of the reported interval for the reduction.
        ci_method: "t" (Fieller interval for the ratio of paired means, matching the t-test;
            default) or "bootstrap" (paired BCa of the ratio statistic).
        seed: seed for Monte-Carlo sign flips and the bootstrap.

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
    deltas = (1.0 - min_reduction) * full - lora
    corrected = bonferroni_alpha(alpha, n_comparisons)
    other: TestName = "t" if test == "sign-flip" else "sign-flip"
    primary = _one_sided(deltas, 0.0, "greater", test, seed)
    secondary = _one_sided(deltas, 0.0, "greater", other, seed)
    if ci_method == "t":
        r_low, r_high = fieller_interval(lora, full, confidence=confidence)
        low, high, ci_name = 1.0 - r_high, 1.0 - r_low, "Fieller (t)"
    else:
        def reduction(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
            return 1.0 - np.mean(a, axis=axis) / np.mean(b, axis=axis)

        ci = bootstrap_ci(lora, full, statistic=reduction, confidence=confidence, seed=seed)
        low, high, ci_name = ci.low, ci.high, f"paired bootstrap {ci.method}"
    status = _status(primary, corrected, estimate > min_reduction)
    estimate_text = (
        f"LoRA drift is {estimate:.1%} lower than full FT ({confidence:.0%} CI {low:.1%} to {high:.1%}), "
        f"claim ≥ {min_reduction:.0%}"
    )
    return Verdict(
        hypothesis="H1b",
        claim=f"LoRA's mean drift is at least {min_reduction:.0%} lower than full fine-tuning's",
        status=status, estimate=estimate, ci_low=float(low), ci_high=float(high), ci_method=ci_name,
        confidence=confidence, n=int(lora.shape[0]), p_value=primary.p_value, test=primary, alpha=alpha,
        n_comparisons=n_comparisons, corrected_alpha=corrected,
        message=_message("H1b", status, estimate_text, primary, alpha, n_comparisons, corrected),
        secondary=secondary,
    )
