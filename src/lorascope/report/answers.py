"""The report's opening: RQ1 and RQ2 answered in plain words from the verdicts, then the verdict
table. Every sentence is computed from the saved numbers; its strength says which tests agree. The
sentences are templates (answers, strength, rq2, verdicts); this module computes what they show."""

from __future__ import annotations

from lorascope.bench.record import BenchRecord
from lorascope.drift.record import LogRatioSummary, NoVerdict, ReductionInterval, SeedsNeeded, StoredVerdict
from lorascope.metrics import (
    format_bounds,
    format_interval,
    format_metric_difference,
    format_p,
    format_ratio,
    format_reduction,
    format_share,
    format_significant,
    is_percentage,
)
from lorascope.report.collect import StudyRecords
from lorascope.report.learning import main_metric, method_display, reference_of, task_learning
from lorascope.report.limitations import noise_of
from lorascope.report.serving_text import aa_noise, h2_max_ratio, h2_rows, merged_ratio_row
from lorascope.report.templating import render_template
from lorascope.report.text import short_test
from lorascope.report.verdict_text import ROBUST_TEXT, family_cell, family_sentences, has_roles, is_primary, p_cells, p_text, robust, verdict_records
from lorascope.variants import recorded_primary


def deciding_p(v: StoredVerdict, which: str = "primary") -> str:
    """The p a status rests on, raw and adjusted for the family: the claim's, or for "rejected" the opposite claim's."""
    return p_text(v, which)


def strength(v: StoredVerdict) -> str:
    """How firmly a verdict stands, in words, with each test's raw and adjusted p."""
    return render_template("strength.md.j2", v=v, first=short_test(v.test), second=short_test(v.secondary),
                           p_first=deciding_p(v), p_second=deciding_p(v, "secondary"), robust=robust(v),
                           robust_text=ROBUST_TEXT)


def _estimate_text(v: StoredVerdict, metric: str | None) -> str:
    """A verdict's estimate: H1a as a difference of the task metric (points, or Matthews' own scale), the
    drift hypotheses as Δ% (with the geometric-mean ratio it comes from, where the record has it)."""
    if v.hypothesis == "H1a":
        return f"LoRA − full = {format_metric_difference(metric, v.estimate)}"
    log_ratio = v.details.log_ratio
    ratio = (f", geometric-mean ratio LoRA / full {format_ratio(log_ratio.gm_ratio)}" if log_ratio and log_ratio.gm_ratio
             else "")
    return f"reduction {format_reduction(None if v.estimate is None else 100 * v.estimate)}{ratio}"


def answers(data: StudyRecords) -> str:
    """The report's "Answers" section (answers.md.j2): for RQ1 (drift), per task with a paired comparison its
    measured reduction, caveats and verdicts (primary hypotheses first), or why a task whose models did not
    learn has no answer; then RQ2 (serving cost)."""
    tasks: list[dict[str, object]] = []
    for task, d in data.drift.items():
        c, lora, full = d.comparison, recorded_primary(d.primary), reference_of(d)
        if not {lora, full} <= set(d.methods) or c.reduction_percent is None:
            tasks.append({"task": task, "comparison": c, "learning": None})
            continue
        learning, hier, log_ratio = task_learning(data, task), c.reduction_ci_seeds_samples, c.log_ratio
        tasks.append({
            "task": task, "comparison": c, "learning": learning, "lora": method_display(lora, d),
            "full": method_display(full, d), "lora_mean": d.methods[lora].drift.mean,
            "full_mean": d.methods[full].drift.mean, "caveat": noise_of(c), "metric": main_metric(data, task),
            "interval": hier if isinstance(hier, ReductionInterval) and hier.low is not None else None,
            "log_ratio": log_ratio if isinstance(log_ratio, LogRatioSummary) and log_ratio.gm_ratio is not None else None,
            "verdicts": verdict_records(c) if learning.learned else []})
    return render_template("answers.md.j2", tasks=tasks, roles=has_roles(data), estimate=_estimate_text,
                           strength=strength, format_reduction=format_reduction, rq2=rq2_sentence(data.bench))


def rq2_sentence(bench: BenchRecord | None) -> str | None:
    """The answer to RQ2 (serving cost of an unmerged adapter) from the benchmark, or None without a batch-1 ratio;
    with the H2 verdicts, lorascope's runtime's ratio and the A/A noise check where the benchmark has them."""
    separate = merged_ratio_row(bench, "lora_separate", 1)
    if separate is None:
        return None
    h2: dict[str, list[str]] = {}
    for r in h2_rows(bench):
        h2.setdefault(r.h2 or "–", []).append(f"{r.strategy} (batch {r.batch_size})")
    return render_template("rq2.md.j2", separate=separate, h2=h2, h2_max_ratio=h2_max_ratio(bench),
                           runtime=merged_ratio_row(bench, "runtime_single", 1), noise=aa_noise(bench))


def seeds_needed_text(info: SeedsNeeded | None) -> str:
    """e.g. "5 to ∞ (paired t, 80% power, from the 95% CI of d_z 0.11 to 1.9); exact test needs ≥ 5"."""
    if not info:
        return "–"
    if "t_range" not in info.model_fields_set:  # records written before the range existed
        if info.t is None:
            return info.note or "–"
        return f"{info.t} (paired t, {format_share(info.power)} power); exact test needs ≥ {info.exact_floor}"
    fewest, most = info.t_range
    if fewest is None:
        return info.note or "–"
    low, high = info.effect_size_dz_ci
    span = f"{fewest}" if most == fewest else f"{fewest} to {'∞' if most is None else most}"
    return (f"{span} (paired t, {format_share(info.power)} power, from the {format_share(info.confidence or 0.95)} CI of d_z "
            f"{format_significant(low, 2)} to {format_significant(high, 2)}); exact test needs ≥ {info.exact_floor}")


def _verdict_row(task: str, v: StoredVerdict, metric: str | None) -> list[str]:
    second = v.secondary
    floor = second.min_attainable_p if second else None
    exact = (f"{short_test(second)}: {v.secondary_status}" + (f" (smallest p {format_p(floor)})" if floor else "")
             if second else "–")
    return [task, v.hypothesis, f"**{v.status}**" + ("" if v.tests_agree else " ⚠"),
            f"{_estimate_text(v, metric)}, {format_share(v.confidence)} CI {_estimate_interval(v, metric)} "
            f"({v.ci_method})", v.uncertainty, short_test(v.test), *p_cells(v),
            exact, *(p_cells(v, "secondary") if second else ("–", "–")), family_cell(v),
            "yes" if robust(v) else "no", seeds_needed_text(v.seeds_needed)]


def verdict_table(data: StudyRecords) -> str:
    """The "Verdicts" section (verdicts.md.j2): the verdicts of every task whose models learned it, primary
    hypotheses first, one row each, each test's raw and adjusted p side by side; for a task whose models did
    not learn, one statement instead of a row per verdict (they would all say the same). "" without verdicts."""
    rows: dict[bool, list[list[str]]] = {True: [], False: []}
    nulls: dict[str, bool] = {}  # hypothesis -> tested on the log scale?
    intervals: dict[str, dict[str, None]] = {}  # method -> the hypotheses whose interval it made
    named: dict[bool, dict[str, None]] = {True: {}, False: {}}  # primary? -> hypotheses, where records say
    set_apart: list[str] = []
    roles = has_roles(data)
    for task, d in data.drift.items():
        records = list(d.comparison.verdicts.values())
        if records and not task_learning(data, task).learned:
            set_apart.append(task)
            continue
        metric = main_metric(data, task)
        # A verdict that could not be computed: its error, and "–" in the other 10 of the table's 14 columns.
        rows[True] += [[task, "–", "not computed", r.error, *["–"] * 10] for r in records if isinstance(r, NoVerdict)]
        for v in verdict_records(d.comparison):
            nulls[v.hypothesis] = v.details.log_ratio is not None
            intervals.setdefault(v.ci_method, {})[v.hypothesis] = None
            if "primary_hypothesis" in v.model_fields_set:
                named[is_primary(v)][v.hypothesis] = None
            rows[is_primary(v) or not roles].append(_verdict_row(task, v, metric))
    if not rows[True] and not rows[False] and not set_apart:
        return ""
    decided = [task for task, d in data.drift.items() if d.comparison.verdicts and task not in set_apart]
    return render_template(
        "verdicts.md.j2", rows=rows, roles=roles, nulls=nulls, intervals=intervals, set_apart=set_apart,
        adjusted=any("p_adjusted" in v.model_fields_set for d in data.drift.values() for v in verdict_records(d.comparison)),
        robust_text=ROBUST_TEXT, family=family_sentences(data, decided), primary=named[True], secondary=named[False],
        compared=[(task, recorded_primary(data.drift[task].primary), reference_of(data.drift[task]))
                  for task in decided if data.drift[task].selection])


def _estimate_interval(v: StoredVerdict, metric: str | None) -> str:
    """A verdict's interval on its estimate's scale: H1a in metric points (Matthews on its own scale), the others in %."""
    low, high = v.ci_low, v.ci_high
    if v.hypothesis == "H1a" and not is_percentage(metric):
        return format_interval(low, high, 3)
    percent = [None if x is None else 100 * x for x in (low, high)]
    return format_interval(percent[0], percent[1], 1) if v.hypothesis == "H1a" else format_bounds(percent, fmt=format_reduction)
