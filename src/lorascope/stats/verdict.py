"""A verdict on one pre-registered hypothesis, decided by two tests of the same null.

The protocol's primary test is the paired t-test across seeds (configurable). The exact sign-flip
test of the same null is always run beside it: it needs no normality, but with n seed pairs its
one-sided p cannot go below 2^-n. Each test gets its own status; a verdict whose two tests disagree
says so instead of silently choosing.

Statuses (per test, at the Bonferroni-corrected alpha):
    supported      p ≤ corrected alpha for the claim.
    rejected       p ≤ corrected alpha for the opposite one-sided claim: the data contradict it.
    underpowered   the test's smallest attainable p exceeds the corrected alpha: no outcome could
                   be significant.
    inconclusive   neither side is significant, and the point estimate points the claimed way
                   (or p is undefined).
    not supported  neither side is significant, and the point estimate does not meet the claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from lorascope.stats.result import TestResult, json_number

Status = Literal["supported", "rejected", "not supported", "underpowered", "inconclusive"]
DECISIVE: tuple[str, ...] = ("supported", "rejected")


@dataclass(frozen=True)
class Verdict:
    """The decision on one hypothesis and everything needed to report it.

    Attributes:
        hypothesis: short label, e.g. "H1a", "H1b", "H1b (debiased)".
        claim: the claim in words, with its thresholds.
        status: the primary test's status (see module docstring).
        estimate: point estimate of the quantity the claim is about.
        ci_low: lower bound of the ``confidence`` interval for the estimate (NaN: unbounded).
        ci_high: upper bound.
        ci_method: how the interval was made.
        confidence: nominal coverage, e.g. 0.95.
        n: seed pairs.
        p_value: p of the primary test for the claim (NaN if undefined).
        test: the primary test for the claim.
        alpha: family-wise alpha.
        n_comparisons: size of the family (e.g. tasks) alpha is split over.
        corrected_alpha: alpha / n_comparisons, the level every p is compared with.
        message: one-paragraph reading of the result, computed from the numbers.
        secondary: the other test of the same null (the exact sign-flip test when the primary is t).
        secondary_status: the status the secondary test alone would give.
        tests_agree: both tests give the same status, or neither is decisive.
        reverse_p_value: the primary test's p for the opposite one-sided claim (what "rejected" rests on).
        secondary_reverse_p_value: the same for the secondary test.
        seeds_needed: seed pairs for 80% power of the primary test at the corrected alpha, given the
            observed mean and spread of the per-seed differences (None: the estimate points the
            other way, or the spread is zero); see :mod:`lorascope.stats.power`.
        extra: further tests of related nulls shown beside the verdict (e.g. H1a's equivalence TOST).
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
    secondary: TestResult | None = None
    secondary_status: Status | None = None
    tests_agree: bool = True
    reverse_p_value: float = math.nan
    secondary_reverse_p_value: float = math.nan
    seeds_needed: dict[str, Any] | None = None
    extra: dict[str, TestResult] = field(default_factory=dict)

    @property
    def decisive(self) -> bool:
        """Both tests reach the same decisive status (supported or rejected)."""
        return self.status in DECISIVE and self.secondary_status == self.status

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the tests nested; NaN and inf become None."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if isinstance(value, TestResult):
                out[key] = value.to_dict()
            elif key == "extra":
                out[key] = {k: v.to_dict() for k, v in value.items()}
            else:
                out[key] = json_number(value)
        out["decisive"] = self.decisive
        return out


def status_of(claim: TestResult, reverse: TestResult, corrected_alpha: float, meets_claim: bool) -> Status:
    """The status one test gives (see the module docstring for the meanings).

    Args:
        claim: the one-sided test (or TOST) whose alternative is the claim.
        reverse: the same test for the opposite one-sided alternative.
        corrected_alpha: the level p is compared with.
        meets_claim: whether the point estimate satisfies the claim.
    """
    if claim.min_attainable_p is not None and claim.min_attainable_p > corrected_alpha:
        return "underpowered"
    if math.isnan(claim.p_value):
        return "inconclusive"
    if claim.p_value <= corrected_alpha:
        return "supported"
    if not math.isnan(reverse.p_value) and reverse.p_value <= corrected_alpha:
        return "rejected"
    return "inconclusive" if meets_claim else "not supported"


def agree(primary: Status, secondary: Status) -> bool:
    """Two tests agree when they give the same status or neither decides."""
    return primary == secondary or (primary not in DECISIVE and secondary not in DECISIVE)


def alpha_text(alpha: float, m: int, corrected: float) -> str:
    """e.g. "0.01667 (0.05/3, Bonferroni)", or just "0.05" for one comparison."""
    return f"{corrected:.4g}" if m == 1 else f"{corrected:.4g} ({alpha:g}/{m}, Bonferroni)"


def _p_text(p: float) -> str:
    return "undefined" if math.isnan(p) else f"{p:.4g}"


def _floor_text(test: TestResult, corrected: float) -> str:
    if test.min_attainable_p is None:
        return ""
    side = "≤" if test.min_attainable_p <= corrected else ">"
    return f" (smallest attainable {test.min_attainable_p:.4g} {side} corrected alpha)"


def message(
    hypothesis: str, status: Status, estimate_text: str, primary: TestResult, secondary: TestResult | None,
    secondary_status: Status | None, alpha: float, m: int, corrected: float, pairs_needed_exact: int,
) -> str:
    """One paragraph: the estimate, the primary test and its decision, the exact test and whether it agrees."""
    a_text = alpha_text(alpha, m, corrected)
    head = f"{hypothesis} {status}: {estimate_text}; {primary.test}, n = {primary.n} seed pairs, p = {_p_text(primary.p_value)}"
    if status == "underpowered":
        head += (f". With n = {primary.n} pairs this test cannot give p below {primary.min_attainable_p:.4g}, which exceeds "
                 f"the corrected alpha {a_text}: no outcome could be significant. "
                 f"At least {pairs_needed_exact} non-zero seed pairs are needed")
    elif status == "supported":
        head += f" ≤ corrected alpha {a_text}"
    elif status == "rejected":
        head += f"; the opposite one-sided test is significant at the corrected alpha {a_text}: the data contradict the claim"
    elif math.isnan(primary.p_value):
        head += f": {primary.note or 'the test is undefined for these data'}"
    elif status == "inconclusive":
        head += f" > corrected alpha {a_text}: the estimate points the claimed way but is not significant"
    else:
        head += f" > corrected alpha {a_text}: the estimate does not meet the claim"
    if secondary is None or secondary_status is None:
        return head + "."
    relation = "agrees" if agree(status, secondary_status) else "DISAGREES"
    return (f"{head}. The {secondary.test} {relation}: {secondary_status}, p = {_p_text(secondary.p_value)} for the "
            f"claim{_floor_text(secondary, corrected)}.")
