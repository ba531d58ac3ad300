"""The study's family of verdicts, declared up front and corrected together (Holm).

A study declares which hypotheses it tests and which of them are primary (its answers rest on
those; the default is the protocol's H1a and H1b). Every declared hypothesis is tested on every
task, and all of these verdicts — hypotheses × tasks — form one family whose p-values are adjusted
together, so that the chance of any false "supported" or "rejected" in the whole study is at most
alpha. A declared verdict that could not be computed (no metric, not interpretable) stays in the
family as p = 1: the family is fixed by the declaration, not by which tests happened to run.

One task's analysis sees only its own verdicts. It adjusts them by Holm within the task at
alpha / n_tasks (:func:`apply_family` with ``n_blocks``): Bonferroni over tasks of Holm within
each, which already holds the study-wise error rate at alpha. Once every task is analysed,
:func:`correct_study` adjusts all of them together by Holm, which is never less powerful; the
per-task records say whether their family was complete.

Each of the four p-values of a verdict (primary test for the claim and for the opposite claim,
secondary test for both) is adjusted within its own family of the same kind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from lorascope.config import StrictModel
from lorascope.stats.verdict import Verdict, decide

HypothesisKey = Literal["h1a", "h1b", "h1b_debiased", "lower", "lower_debiased"]
ALL_HYPOTHESES: list[HypothesisKey] = ["h1a", "h1b", "h1b_debiased", "lower", "lower_debiased"]
DEFAULT_PRIMARY: list[HypothesisKey] = ["h1a", "h1b"]  # the protocol's
# The label each hypothesis carries in a verdict record.
HYPOTHESES: dict[str, str] = {
    "h1a": "H1a",
    "h1b": "H1b",
    "h1b_debiased": "H1b (debiased)",
    "lower": "LoRA drifts less",
    "lower_debiased": "LoRA drifts less (debiased)",
}
Correction = Literal["holm", "bonferroni"]


class HypothesisFamily(StrictModel):
    """The hypotheses a study tests, which are primary, and how their family is corrected."""

    hypotheses: list[HypothesisKey] = Field(
        default_factory=lambda: list(ALL_HYPOTHESES), description="hypotheses tested on every task; all of them, on all tasks, are one family "
        "corrected together (h1a: metric non-inferiority; h1b: drift at least min_reduction lower; lower: LoRA "
        "drifts less; *_debiased: the same on debiased CKA)")
    primary: list[HypothesisKey] = Field(
        default_factory=lambda: list(DEFAULT_PRIMARY), description="the hypotheses the study's answers rest on; the others are secondary: in the "
        "same family, corrected the same way, reported after them")
    correction: Correction = Field(default="holm", description="family-wise correction over hypotheses × tasks")

    @model_validator(mode="after")
    def _primary_declared(self) -> HypothesisFamily:
        if not self.hypotheses:
            raise ValueError("hypotheses: declare at least one")
        for name, values in (("hypotheses", self.hypotheses), ("primary", self.primary)):
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: entries must be distinct")
        undeclared = [h for h in self.primary if h not in self.hypotheses]
        if undeclared:
            raise ValueError(f"primary: {', '.join(undeclared)} not among the declared hypotheses")
        return self


def _p(value: float) -> float:
    # An undefined test (NaN p) cannot reject; counting it as p = 1 keeps the declared family size.
    return 1.0 if math.isnan(value) else float(value)


def _adjust(raw: list[float], method: str, alpha: float, n_blocks: int) -> np.ndarray:
    # Imported here: the settings import HypothesisFamily, and reading settings (e.g. for `--help`)
    # must not load statsmodels and scipy.
    from lorascope.stats.corrections import correct

    corr = correct(np.array([_p(p) for p in raw]), method="holm" if method == "holm" else "bonferroni", alpha=alpha)
    return np.asarray(np.minimum(1.0, corr.p_adjusted * n_blocks))


def apply_family(
    verdicts: Mapping[str, Verdict | None],
    *,
    alpha: float = 0.05,
    correction: Correction = "holm",
    n_blocks: int = 1,
    primary: tuple[str, ...] | list[str] | None = None,
    note: str = "",
) -> dict[str, Verdict]:
    """Adjust a family of verdicts together and re-decide each.

    Args:
        verdicts: member name (e.g. "sst2/h1b") -> verdict with raw p-values, or None for a declared
            verdict that could not be computed (it counts as p = 1).
        alpha: family-wise error rate.
        correction: "holm" (default) or "bonferroni" within the given verdicts.
        n_blocks: further blocks of the same size adjusted separately (e.g. the study's other tasks):
            adjusted p-values are multiplied by it (Bonferroni over blocks) and the family size is
            ``len(verdicts) · n_blocks``. 1: the given verdicts are the whole family.
        primary: member names declared primary (their ``primary_hypothesis`` is set; None: unchanged).
        note: how the family was formed, recorded in each verdict's ``family``.

    Returns:
        member name -> re-decided verdict, for the members that are not None.
    """
    from lorascope.stats.power import exact_floor_pairs, replan  # scipy: see _adjust

    names = list(verdicts)
    if not names:
        return {}
    size = len(names) * n_blocks
    present = {k: v for k, v in verdicts.items() if v is not None}

    def raw(get: Any) -> np.ndarray:
        return _adjust([get(verdicts[k]) if verdicts[k] is not None else math.nan for k in names], correction, alpha, n_blocks)

    claim = raw(lambda v: v.p_value)
    reverse = raw(lambda v: v.reverse_p_value)
    secondary = raw(lambda v: v.secondary_p_value)
    secondary_reverse = raw(lambda v: v.secondary_reverse_p_value)
    method = correction if size > 1 else "none"
    family: dict[str, Any] = {"method": method, "size": size, "members": names, "complete": n_blocks == 1, "note": note}
    corrected = alpha / size
    out = {}
    for i, name in enumerate(names):
        v = present.get(name)
        if v is None:
            continue
        v = v if primary is None else _with_role(v, name in primary)
        v = replace(v, seeds_needed=replan(v.seeds_needed, corrected))
        out[name] = decide(
            v,
            p_adjusted=math.nan if math.isnan(v.p_value) else float(claim[i]),
            reverse_p_adjusted=math.nan if math.isnan(v.reverse_p_value) else float(reverse[i]),
            secondary_p_adjusted=math.nan if math.isnan(v.secondary_p_value) else float(secondary[i]),
            secondary_reverse_p_adjusted=math.nan if math.isnan(v.secondary_reverse_p_value) else float(secondary_reverse[i]),
            size=size, correction=method, family=family, pairs_needed_exact=exact_floor_pairs(corrected),
        )
    return out


def _with_role(v: Verdict, primary: bool) -> Verdict:
    return replace(v, primary_hypothesis=primary)


def correct_study(
    comparisons: Mapping[str, Mapping[str, Any]],
    *,
    alpha: float = 0.05,
    family: HypothesisFamily | None = None,
    tasks: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Adjust every verdict of a study (hypotheses × tasks) together, on the saved records.

    Args:
        comparisons: task -> that task's comparison record (``drift.json``'s ``comparison``), whose
            ``verdicts`` maps hypothesis key -> verdict record (``Verdict.to_dict``) or an
            ``{"error": ...}`` record for a declared verdict that could not be computed.
        alpha: family-wise error rate.
        family: the declared family (hypotheses, primary, correction); None: the hypotheses found in
            the records, primary as the records say, Holm.
        tasks: every task of the study, including those without a comparison (e.g. all runs failed):
            their declared verdicts count as p = 1. None: the tasks in ``comparisons``.

    Returns:
        task -> a copy of the comparison with every verdict re-decided over the whole family, and
        ``family`` describing it; tasks without a comparison are left out. Records that are not
        verdicts stay as they were (and count as p = 1).
    """
    if family is None:
        found = [k for comp in comparisons.values() for k in (comp.get("verdicts") or {})]
        hypotheses = list(dict.fromkeys(found))
        correction: Correction = "holm"
    else:
        hypotheses, correction = list(family.hypotheses), family.correction
    members: dict[str, Verdict | None] = {}
    primary: list[str] = []
    for task in tasks if tasks is not None else list(comparisons):
        records = (comparisons.get(task) or {}).get("verdicts") or {}
        for key in hypotheses:
            name, record = f"{task}/{key}", records.get(key) or {}
            members[name] = Verdict.from_dict(dict(record)) if "status" in record else None
            declared = key in family.primary if family is not None else record.get("primary_hypothesis", True)
            if declared:
                primary.append(name)
    decided = apply_family(members, alpha=alpha, correction=correction, primary=primary,
                           note="every verdict of the study (hypotheses × tasks), adjusted together")
    summary = {"method": correction if len(members) > 1 else "none", "size": len(members), "members": list(members),
               "hypotheses": hypotheses, "primary": sorted({n.split("/", 1)[1] for n in primary}, key=hypotheses.index),
               "alpha": alpha, "complete": True}
    out: dict[str, dict[str, Any]] = {}
    for task, comp in comparisons.items():
        new = dict(comp)
        verdicts = dict(comp.get("verdicts") or {})
        for key in verdicts:
            if f"{task}/{key}" in decided:
                verdicts[key] = decided[f"{task}/{key}"].to_dict()
        if verdicts:
            new["verdicts"] = verdicts
            new["family"] = summary
        out[task] = new
    return out
