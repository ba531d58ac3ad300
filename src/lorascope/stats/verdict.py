"""A verdict on one pre-registered hypothesis, decided by two tests of the same null, with its p
adjusted for the family of verdicts it belongs to.

The protocol's primary test is the paired t-test across seeds (configurable). The exact sign-flip
test of the same null is always run beside it: it needs no normality, but with n seed pairs its
one-sided p cannot go below 2^-n. Each test gets its own status; a verdict whose two tests disagree
says so instead of silently choosing. When both reach the same decision the verdict is *robust to
the normality assumption*; that is all it is: the two tests read the same seeds, so their agreement
is not a replication.

Every p is reported raw and adjusted. A verdict decided alone is adjusted by Bonferroni over
``n_comparisons``; a study's verdicts (hypotheses × tasks) are adjusted together by Holm (see
:mod:`lorascope.stats.family`), which re-decides each one with :func:`decide`. Each test's p-values
(primary claim, primary opposite claim, secondary claim, secondary opposite claim) are adjusted
within their own family, so the two tests are compared like with like.

Statuses (per test; "adjusted p" is the p after the family's correction, compared with alpha):
    supported      adjusted p ≤ alpha for the claim.
    rejected       adjusted p ≤ alpha for the opposite one-sided claim: the data contradict it.
    underpowered   the test's smallest attainable p exceeds alpha / m (m = family size): whatever the
                   data, no p in the family can pass the correction's first step, so this test cannot
                   decide anything.
    inconclusive   neither side is significant, and the point estimate points the claimed way
                   (or p is undefined).
    not supported  neither side is significant, and the point estimate does not meet the claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from lorascope.stats.result import TestResult, json_number

Status = Literal["supported", "rejected", "not supported", "underpowered", "inconclusive"]
DECIDED: tuple[str, ...] = ("supported", "rejected")
DECISIVE = DECIDED  # former name, kept for importers
ROBUST_TEXT = "robust to the normality assumption: the t-test and the exact sign-flip test agree"
CORRECTION_NAMES = {"holm": "Holm", "bonferroni": "Bonferroni", "none": "no correction"}


@dataclass(frozen=True)
class Verdict:
    """The decision on one hypothesis and everything needed to report it (and to re-decide it).

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
        p_value: raw p of the primary test for the claim (NaN if undefined).
        test: the primary test for the claim.
        alpha: family-wise alpha; every adjusted p is compared with it.
        n_comparisons: size m of the family the p-values are adjusted over.
        corrected_alpha: alpha / m, the correction's strictest level: some raw p of the family must
            reach it before anything is decided (Bonferroni: the level of every test).
        message: one-paragraph reading of the result, computed from the numbers.
        secondary: the other test of the same null (the exact sign-flip test when the primary is t).
        secondary_status: the status the secondary test alone would give.
        tests_agree: both tests give the same status, or neither decides.
        reverse_p_value: raw p of the primary test for the opposite one-sided claim (what
            "rejected" rests on).
        secondary_reverse_p_value: the same for the secondary test.
        seeds_needed: seed pairs for 80% power at ``corrected_alpha``, as a range from the
            effect size's confidence interval; see :mod:`lorascope.stats.power`.
        extra: further tests of related nulls shown beside the verdict (e.g. H1a's equivalence TOST).
        p_adjusted: ``p_value`` adjusted for the family (NaN when the test is undefined).
        reverse_p_adjusted: ``reverse_p_value`` adjusted within the family of opposite claims.
        secondary_p_adjusted: the secondary test's claim p adjusted within its own family.
        secondary_reverse_p_adjusted: its opposite-claim p, adjusted the same way.
        correction: "holm", "bonferroni" or "none".
        family: who the p was adjusted with: ``members`` (e.g. "sst2/h1b"), ``size``, ``method``,
            ``complete`` (False: only part of the study's family was known; see
            :mod:`lorascope.stats.family`) and a ``note``.
        primary_hypothesis: the study declared this hypothesis primary (its answers rest on it);
            secondary hypotheses are in the same family and corrected the same way.
        meets_claim: the point estimate satisfies the claim (tells "inconclusive" from "not supported").
        estimate_text: the estimate and its interval in words (re-used when the verdict is re-decided).
        uncertainty: what the test and interval treat as random, e.g. "seeds" or
            "seeds and dev examples".
        details: JSON-ready numbers behind the estimate (e.g. the geometric-mean ratio and its
            interval, variance components).
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
    p_adjusted: float = math.nan
    reverse_p_adjusted: float = math.nan
    secondary_p_adjusted: float = math.nan
    secondary_reverse_p_adjusted: float = math.nan
    correction: str = "none"
    family: dict[str, Any] = field(default_factory=dict)
    primary_hypothesis: bool = True
    meets_claim: bool = False
    estimate_text: str = ""
    uncertainty: str = "seeds"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def robust_to_normality(self) -> bool:
        """Both tests reach the same decision (supported or rejected): the decision does not hang on
        the t-test's normality assumption. Not a replication: both tests read the same seeds."""
        return self.status in DECIDED and self.secondary_status == self.status

    @property
    def secondary_p_value(self) -> float:
        """Raw p of the secondary test for the claim (NaN without a secondary test)."""
        return self.secondary.p_value if self.secondary is not None else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the tests nested; NaN and inf become None.

        ``robust_to_normality`` is added (results written before it was named carry ``decisive``).
        """
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if isinstance(value, TestResult):
                out[key] = value.to_dict()
            elif key == "extra":
                out[key] = {k: v.to_dict() for k, v in value.items()}
            elif isinstance(value, dict):
                out[key] = _json_ready(value)
            else:
                out[key] = json_number(value)
        out["robust_to_normality"] = self.robust_to_normality
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        """The verdict back from :meth:`to_dict` (None numbers become NaN).

        Records written before the family correction lack ``meets_claim``: it is read from the
        status (a supported or inconclusive verdict's estimate met the claim).
        """
        known = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in known}
        for key in ("test", "secondary"):
            if kw.get(key) is not None:
                kw[key] = _test_from_dict(kw[key])
        kw["extra"] = {k: _test_from_dict(v) for k, v in (kw.get("extra") or {}).items()}
        for f in fields(cls):
            if f.type == "float" and kw.get(f.name, 0.0) is None:
                kw[f.name] = math.nan
        kw.setdefault("meets_claim", d.get("status") in ("supported", "inconclusive"))
        kw.setdefault("p_adjusted", kw.get("p_value", math.nan))
        return cls(**kw)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return json_number(value)


def _test_from_dict(d: dict[str, Any]) -> TestResult:
    kw = {f.name: d[f.name] for f in fields(TestResult) if f.name in d}
    for key in ("statistic", "p_value"):
        if kw.get(key) is None:
            kw[key] = math.nan
    return TestResult(**kw)


def status_of(
    claim: TestResult, p_adjusted: float, reverse_p_adjusted: float, alpha: float, corrected_alpha: float, meets_claim: bool
) -> Status:
    """The status one test gives (see the module docstring for the meanings).

    Args:
        claim: the one-sided test (or TOST) whose alternative is the claim (for its p floor).
        p_adjusted: its p after the family's correction.
        reverse_p_adjusted: the adjusted p of the same test for the opposite one-sided alternative.
        alpha: the family-wise level adjusted p-values are compared with.
        corrected_alpha: alpha / m, the level some raw p must reach before the family decides anything.
        meets_claim: whether the point estimate satisfies the claim.
    """
    if claim.min_attainable_p is not None and claim.min_attainable_p > corrected_alpha:
        return "underpowered"
    if math.isnan(p_adjusted):
        return "inconclusive"
    if p_adjusted <= alpha:
        return "supported"
    if not math.isnan(reverse_p_adjusted) and reverse_p_adjusted <= alpha:
        return "rejected"
    return "inconclusive" if meets_claim else "not supported"


def agree(primary: Status, secondary: Status) -> bool:
    """Two tests agree when they give the same status or neither decides."""
    return primary == secondary or (primary not in DECIDED and secondary not in DECIDED)


def alpha_text(alpha: float, m: int, corrected: float, correction: str = "bonferroni") -> str:
    """e.g. "0.01667 (0.05/3, Bonferroni)", or just "0.05" for one comparison."""
    if m == 1:
        return f"{corrected:.4g}"
    return f"{corrected:.4g} ({alpha:g}/{m}, {CORRECTION_NAMES.get(correction, correction)})"


def _p_text(p: float) -> str:
    return "undefined" if math.isnan(p) else f"{p:.4g}"


def _adjusted_text(raw: float, adjusted: float, m: int, correction: str) -> str:
    """"p = 0.01224, Holm-adjusted over 5 verdicts 0.0612", or "p = 0.01224" when nothing was adjusted."""
    if m == 1 or correction == "none" or math.isnan(raw):
        return f"p = {_p_text(raw)}"
    return f"p = {_p_text(raw)}, {CORRECTION_NAMES.get(correction, correction)}-adjusted over {m} verdicts {_p_text(adjusted)}"


def _floor_text(test: TestResult, corrected: float) -> str:
    if test.min_attainable_p is None:
        return ""
    side = "≤" if test.min_attainable_p <= corrected else ">"
    return f" (smallest attainable {test.min_attainable_p:.4g} {side} {corrected:.4g})"


def message(v: Verdict, pairs_needed_exact: int) -> str:
    """One paragraph: the estimate, the primary test and its decision, the exact test and whether it agrees."""
    m, corrected, alpha = v.n_comparisons, v.corrected_alpha, v.alpha
    primary, status = v.test, v.status
    decided_at = f"α {alpha:g}" if m == 1 or v.correction == "none" else f"family-wise α {alpha:g}"
    head = (f"{v.hypothesis} {status}: {v.estimate_text}; {primary.test}, n = {primary.n} seed pairs, "
            f"{_adjusted_text(v.p_value, v.p_adjusted, m, v.correction)}")
    if status == "underpowered":
        head += (f". With n = {primary.n} pairs this test cannot give p below {primary.min_attainable_p:.4g}, which exceeds "
                 f"{alpha_text(alpha, m, corrected, v.correction)}: no outcome could be significant. "
                 f"At least {pairs_needed_exact} non-zero seed pairs are needed")
    elif status == "supported":
        head += f" ≤ {decided_at}"
    elif status == "rejected":
        head += (f"; the opposite one-sided test is significant at {decided_at} "
                 f"({_adjusted_text(v.reverse_p_value, v.reverse_p_adjusted, m, v.correction)}): the data contradict the claim")
    elif math.isnan(v.p_value):
        head += f": {primary.note or 'the test is undefined for these data'}"
    elif status == "inconclusive":
        head += f" > {decided_at}: the estimate points the claimed way but is not significant"
    else:
        head += f" > {decided_at}: the estimate does not meet the claim"
    secondary, secondary_status = v.secondary, v.secondary_status
    if secondary is None or secondary_status is None:
        return head + "."
    relation = "agrees" if agree(status, secondary_status) else "DISAGREES"
    text = (f"{head}. The {secondary.test} {relation}: {secondary_status}, "
            f"{_adjusted_text(v.secondary_p_value, v.secondary_p_adjusted, m, v.correction)} for the "
            f"claim{_floor_text(secondary, corrected)}.")
    if v.robust_to_normality:
        text += f" The decision is {ROBUST_TEXT} (on the same seeds: not a replication)."
    return text


def decide(
    v: Verdict,
    *,
    p_adjusted: float,
    reverse_p_adjusted: float,
    secondary_p_adjusted: float = math.nan,
    secondary_reverse_p_adjusted: float = math.nan,
    size: int,
    correction: str,
    family: dict[str, Any] | None = None,
    pairs_needed_exact: int = 1,
) -> Verdict:
    """``v`` with adjusted p-values, both tests' statuses and the message recomputed.

    Args:
        v: a verdict with its raw p-values.
        p_adjusted: the primary claim p after the family's correction; the other three likewise.
        size: the family size m.
        correction: "holm", "bonferroni" or "none".
        family: who the p-values were adjusted with (see :attr:`Verdict.family`).
        pairs_needed_exact: fewest non-zero seed pairs with which the exact test can reach alpha / m.
    """
    corrected = v.alpha / size
    status = status_of(v.test, p_adjusted, reverse_p_adjusted, v.alpha, corrected, v.meets_claim)
    secondary_status: Status | None = None
    if v.secondary is not None:
        secondary_status = status_of(v.secondary, secondary_p_adjusted, secondary_reverse_p_adjusted, v.alpha, corrected,
                                     v.meets_claim)
    out = replace(
        v, status=status, secondary_status=secondary_status,
        tests_agree=secondary_status is None or agree(status, secondary_status),
        p_adjusted=p_adjusted, reverse_p_adjusted=reverse_p_adjusted, secondary_p_adjusted=secondary_p_adjusted,
        secondary_reverse_p_adjusted=secondary_reverse_p_adjusted, n_comparisons=size, corrected_alpha=corrected,
        correction=correction, family=dict(family or v.family),
    )
    return replace(out, message=message(out, pairs_needed_exact))
