"""How the report writes a verdict's statistics: each test's raw p beside the p adjusted for the
study's family of verdicts, the family itself (size, correction), and whether a decision is robust to
the normality assumption. Records written before verdicts were adjusted as one family carry neither
adjusted p-values nor a family: their p is shown raw, with the Bonferroni level they were decided at.
"""

from __future__ import annotations

from lorascope.drift.record import ComparisonFamily, DriftComparison, StoredVerdict, VerdictFamily
from lorascope.metrics import format_p, format_significant
from lorascope.report.collect import StudyRecords
from lorascope.report.templating import render_template

CORRECTIONS = {"holm": "Holm", "bonferroni": "Bonferroni"}
ROBUST_TEXT = ("robust to the normality assumption: the t-test and the exact sign-flip test agree on the same seeds "
               "(not a replication)")
Family = ComparisonFamily | VerdictFamily


def decided_verdicts(comparison: DriftComparison) -> list[StoredVerdict]:
    """The computed verdicts of a comparison, in the recorded order (those not computed left out)."""
    return [v for v in comparison.verdicts.values() if isinstance(v, StoredVerdict)]


def verdict_records(comparison: DriftComparison) -> list[StoredVerdict]:
    """The computed verdicts of a comparison, primary hypotheses first (each group in the recorded order)."""
    return sorted(decided_verdicts(comparison), key=lambda v: not v.primary_hypothesis)


def is_primary(v: StoredVerdict) -> bool:
    """Whether the study declared the verdict's hypothesis primary (records without the key: all were)."""
    return v.primary_hypothesis


def has_roles(data: StudyRecords) -> bool:
    """Whether the study's verdict records say which hypotheses are primary."""
    return any("primary_hypothesis" in v.model_fields_set for d in data.drift.values()
               for v in d.comparison.verdicts.values())


def robust(v: StoredVerdict) -> bool:
    """Both tests reached the same decision (read from the former key where the new one is missing)."""
    return bool(v.robust_to_normality if v.robust_to_normality is not None else v.decisive)


def is_adjusted(v: StoredVerdict) -> bool:
    """Whether the record carries p-values adjusted for a family of more than one verdict."""
    return "p_adjusted" in v.model_fields_set and v.correction != "none"


def correction_name(v: StoredVerdict) -> str:
    """The name of a verdict's multiple-testing correction, as the report writes it."""
    return CORRECTIONS.get(v.correction, v.correction)


def test_ps(v: StoredVerdict, which: str = "primary") -> tuple[float | None, float | None, bool]:
    """(raw p, adjusted p, for the opposite claim?) of the p a test's status rests on: the claim's, or
    for "rejected" the opposite one-sided claim's. Adjusted is None in records without it."""
    if which == "primary":
        if v.status == "rejected":
            return v.reverse_p_value, v.reverse_p_adjusted, True
        return v.p_value, v.p_adjusted, False
    if v.secondary_status == "rejected":
        return v.secondary_reverse_p_value, v.secondary_reverse_p_adjusted, True
    return (v.secondary.p_value if v.secondary else None), v.secondary_p_adjusted, False


def p_text(v: StoredVerdict, which: str = "primary") -> str:
    """``p = 0.0123, Holm-adjusted 0.0615``, with `` for the opposite claim`` where the status rests on
    it; the raw p alone where nothing was adjusted."""
    raw, adjusted, opposite = test_ps(v, which)
    text = f"p = {format_p(raw)}"
    if is_adjusted(v) and raw is not None:
        text += f", {correction_name(v)}-adjusted {format_p(adjusted)}"
    return text + (" for the opposite claim" if opposite else "")


def p_cells(v: StoredVerdict, which: str = "primary") -> tuple[str, str]:
    """The raw and the adjusted p of one test as two table cells."""
    raw, adjusted, opposite = test_ps(v, which)
    suffix = " (opposite claim)" if opposite else ""
    if not is_adjusted(v):
        return format_p(raw) + suffix, "not adjusted"
    return format_p(raw) + suffix, format_p(adjusted) + suffix


def family_cell(v: StoredVerdict) -> str:
    """Who a verdict's p was adjusted with: ``Holm over 15``; ``Bonferroni: α/3 = 0.01667`` for records
    decided before families; ``none`` for a family of one."""
    if "p_adjusted" not in v.model_fields_set:
        m = v.n_comparisons
        return "none" if m == 1 else f"Bonferroni: α/{m} = {format_significant(v.corrected_alpha, 4)}"
    if v.correction == "none":
        return "none (one verdict)"
    size = v.family.size if v.family else v.n_comparisons
    part = "" if v.family is None or v.family.complete else ", within the task × Bonferroni over tasks"
    return f"{correction_name(v)} over {size}{part}"


def _hypotheses(family: Family | None) -> list[str]:
    return family.hypotheses if isinstance(family, ComparisonFamily) else []


def tasks_in(family: Family | None) -> int | None:
    """The tasks a family spans: recorded, or its size over its hypotheses (None when neither says)."""
    hypotheses = _hypotheses(family)
    if isinstance(family, ComparisonFamily) and family.n_tasks:
        return family.n_tasks
    if family is not None and hypotheses and family.size % len(hypotheses) == 0:
        return family.size // len(hypotheses)
    return None


def family_shape(family: Family | None) -> str:
    """`` (5 hypotheses × 3 tasks)``, or nothing where the family does not say."""
    hypotheses, tasks = _hypotheses(family), tasks_in(family)
    if not hypotheses or not tasks:
        return ""
    return (f" ({len(hypotheses)} hypothes{'is' if len(hypotheses) == 1 else 'es'} × {tasks} "
            f"task{'s' if tasks != 1 else ''})")


def family_sentences(data: StudyRecords, tasks: list[str]) -> list[str]:
    """How the verdicts of ``tasks`` were corrected (family.md.j2): one sentence per group of tasks
    corrected alike, led by the group's tasks where the groups differ."""
    groups: dict[str, list[str]] = {}
    for task in tasks:
        c = data.drift[task].comparison
        if not (records := verdict_records(c)):
            continue
        first, family = records[0], c.family or records[0].family
        size, method = (family.size, family.method) if family else (first.n_comparisons, first.correction)
        alpha = family.alpha if isinstance(family, ComparisonFamily) else first.alpha
        text = render_template("family.md.j2", first=first, family=family, size=size, method=method, alpha=alpha,
                               correction=CORRECTIONS.get(method, method), per_task=len(_hypotheses(family)) or size,
                               tasks=tasks_in(family), shape=family_shape(family))
        groups.setdefault(text, []).append(task)
    return [text if len(groups) == 1 else f"{', '.join(ts)}: {text}" for text, ts in groups.items()]
