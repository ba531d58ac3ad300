"""The report's opening: RQ1 and RQ2 answered in plain words from the verdicts, then the verdict
table. Every sentence is computed from the saved numbers; its strength says which tests agree."""

from __future__ import annotations

from lorascope.bench.record import BenchRecord
from lorascope.drift.record import (
    DriftRecord,
    LogRatioSummary,
    NoVerdict,
    ReductionInterval,
    SeedsNeeded,
    StoredVerdict,
)
from lorascope.metrics import (
    format_bounds,
    format_interval,
    format_metric_difference,
    format_p,
    format_ratio,
    format_reduction,
    format_reduction_interval,
    is_percentage,
)
from lorascope.report.collect import StudyRecords
from lorascope.report.learning import main_metric, method_display, reference_of, task_learning
from lorascope.report.limitations import noise_of
from lorascope.report.serving_text import aa_noise, h2_max_ratio, h2_rows, merged_ratio_row
from lorascope.report.text import short_test, table
from lorascope.report.verdict_text import (
    ROBUST_TEXT,
    family_cell,
    family_sentences,
    has_roles,
    is_primary,
    p_cells,
    p_text,
    robust,
    verdict_records,
)
from lorascope.variants import recorded_primary

# Null hypothesis of each verdict's one-sided test, in words (the claim is its negation): on the log
# scale where the record tested per-seed log ratios, on the ratio of mean drifts where it did not.
NULLS = {
    "H1a": "mean LoRA − full metric ≤ −margin",
    "H1b": "mean LoRA drift ≥ (1 − min reduction) · mean full drift",
    "H1b (debiased)": "the same on debiased drift",
    "LoRA drifts less": "mean LoRA drift ≥ mean full drift",
    "LoRA drifts less (debiased)": "the same on debiased drift",
}
LOG_NULLS = {
    "H1b": "mean over seeds of log(LoRA drift / full drift) ≥ log(1 − min reduction)",
    "LoRA drifts less": "mean over seeds of log(LoRA drift / full drift) ≥ 0",
}


def null_of(v: StoredVerdict) -> str:
    """The null hypothesis of a verdict's one-sided test, on the scale its record was tested on."""
    if v.details.log_ratio:
        return LOG_NULLS.get(v.hypothesis, NULLS.get(v.hypothesis, ""))
    return NULLS.get(v.hypothesis, "")


def deciding_p(v: StoredVerdict, which: str = "primary") -> str:
    """The p a status rests on, raw and adjusted for the family: the claim's, or for "rejected" the opposite claim's."""
    return p_text(v, which)


def _level(v: StoredVerdict) -> str:
    """The level a test's smallest p must reach: the family's strictest, or α for a family of one."""
    m = v.n_comparisons
    return f"α = {v.corrected_alpha:.4g}" if m == 1 else f"the family's strictest level α/{m} = {v.corrected_alpha:.4g}"


def strength(v: StoredVerdict) -> str:
    """How firmly a verdict stands, in words, with each test's raw and adjusted p."""
    first, second, other = short_test(v.test), short_test(v.secondary), v.secondary
    if other is None:
        return f"{v.status} ({first} {deciding_p(v)}; no second test)"
    if robust(v):
        return (f"{v.status} by both the {first} ({deciding_p(v)}) and the {second} ({deciding_p(v, 'secondary')}); "
                f"the decision is {ROBUST_TEXT}")
    if not v.tests_agree:
        why = (f"cannot reach {_level(v)} with n = {other.n} (its smallest p is {format_p(other.min_attainable_p)})"
               if v.secondary_status == "underpowered" and other.min_attainable_p else
               f"says {v.secondary_status} ({deciding_p(v, 'secondary')})")
        return f"{v.status} by the {first} ({deciding_p(v)}), but the {second} {why} — not confirmed"
    return f"{v.status} ({first} {deciding_p(v)}; not decided)"


def _estimate_text(v: StoredVerdict, metric: str | None) -> str:
    """A verdict's estimate: H1a as a difference of the task metric (points, or Matthews' own scale), the
    drift hypotheses as Δ% (with the geometric-mean ratio it comes from, where the record has it)."""
    if v.hypothesis == "H1a":
        return f"LoRA − full = {format_metric_difference(metric, v.estimate)}"
    log_ratio = v.details.log_ratio
    ratio = (f", geometric-mean ratio LoRA / full {format_ratio(log_ratio.gm_ratio)}" if log_ratio and log_ratio.gm_ratio
             else "")
    return f"reduction {format_reduction(None if v.estimate is None else 100 * v.estimate)}{ratio}"


def _pairs(n: int) -> str:
    return f"{n} seed pair{'s' if n != 1 else ''}"


def reduction_sentence(task: str, d: DriftRecord, reduction: float) -> str:
    """The measured drift reduction ``reduction`` (Δ%) of a task's primary comparison: on the log scale
    (geometric-mean ratio and Δ% with their t intervals over seeds) where drift.json has it, else the ratio of means."""
    c, ms = d.comparison, d.methods
    lora, full = recorded_primary(d.primary), reference_of(d)
    hier = c.reduction_ci_seeds_samples
    ci = ""
    if isinstance(hier, ReductionInterval) and hier.low is not None:
        on_log = (hier.scale or "").startswith("geometric")
        ci = (f"; {hier.confidence:.0%} interval over seeds and dev samples{' (log scale)' if on_log else ''} "
              f"{format_reduction_interval(hier.low, hier.high)}")
    direction = f"{format_reduction(reduction)} less" if reduction >= 0 else f"{format_reduction(-reduction)} more"
    head = (f"**{task}** ({_pairs(c.n_pairs)}): {method_display(lora, d)}'s representations drifted {direction} than "
            f"{method_display(full, d)}'s")
    means = f"mean drift {ms[lora].drift.mean:.3f} vs {ms[full].drift.mean:.3f}"
    log_ratio = c.log_ratio
    if not isinstance(log_ratio, LogRatioSummary) or log_ratio.gm_ratio is None:
        return f"{head} ({means}{ci})."
    of_means = c.reduction_percent_of_means
    return (f"{head}: geometric mean over seeds of the per-seed drift ratio LoRA / full {format_ratio(log_ratio.gm_ratio)} "
            f"({log_ratio.confidence:.0%} t interval over seeds on the log scale {format_bounds(log_ratio.gm_ratio_ci)}), "
            f"Δ% = 100 · (1 − ratio) {format_reduction(reduction)} "
            f"{format_bounds(log_ratio.reduction_percent_ci, fmt=format_reduction)}{ci}; {means}"
            + (f", whose ratio gives {format_reduction(of_means)}" if of_means is not None else "") + ").")


def rq1_sentences(data: StudyRecords) -> list[str]:
    """One bullet per task with the measured reduction, then one per verdict (primary hypotheses first)
    with its strength; for a task whose models did not learn, one statement why it has no answer, and
    no test or effect size."""
    out = []
    roles = has_roles(data)
    for task, d in data.drift.items():
        c, lora, full = d.comparison, recorded_primary(d.primary), reference_of(d)
        if not {lora, full} <= set(d.methods) or c.reduction_percent is None:
            out.append(f"**{task}**: no paired comparison ({c.note or 'one method missing'}).")
            continue
        learning = task_learning(data, task)
        if not learning.learned:
            out.append(f"**{task}** ({_pairs(c.n_pairs)}): no answer — {learning.statement()}. Drift between "
                       "models that did not learn says nothing about how LoRA and full fine-tuning differ, so no "
                       "test, interval or effect size of this task is reported; its drift is described below.")
            continue
        out.append(reduction_sentence(task, d, c.reduction_percent))
        if c.n_pairs < 2:
            out.append(f"{task}: one seed pair allows no test across seeds; the numbers above are one pair's, "
                       "without an interval over seeds.")
        caveat = noise_of(c)
        if caveat and caveat.applies:
            out.append(f"{task}: could be seed noise — {caveat.text}.")
        if learning.weak_runs:
            out.append(f"{task}: single runs at majority level, included above: {'; '.join(learning.weak_runs)}.")
        metric = main_metric(data, task)
        for v in verdict_records(c):
            role = " (secondary)" if roles and not is_primary(v) else ""
            out.append(f"{task} — {v.hypothesis}{role}: {v.claim} ({_estimate_text(v, metric)}): {strength(v)}.")
    return out


def rq2_sentence(bench: BenchRecord | None) -> str | None:
    """The answer to RQ2 (serving cost of an unmerged adapter) from the benchmark, or None without a batch-1 ratio.

    Adds the H2 verdicts, lorascope's runtime's ratio and the A/A noise check where the benchmark has them."""
    sep = merged_ratio_row(bench, "lora_separate", 1)
    if sep is None:
        return None
    text = (f"Serving a LoRA adapter unmerged through PEFT costs {sep.ratio_to_merged:.3f}× the merged model's mean "
            f"latency at batch 1 (95% CI {format_interval(sep.ratio_ci_low, sep.ratio_ci_high)}).")
    by_verdict: dict[str, list[str]] = {}
    for r in h2_rows(bench):
        by_verdict.setdefault(r.h2 or "–", []).append(f"{r.strategy} (batch {r.batch_size})")
    verdicts = "; ".join(f"{k} for {', '.join(v)}" for k, v in by_verdict.items())
    text += f" H2 (at most {100 * (h2_max_ratio(bench) - 1):.0f}% added latency): {verdicts}."
    rt = merged_ratio_row(bench, "runtime_single", 1)
    if rt is not None:
        text += (f" lorascope's runtime serves the same adapter at {rt.ratio_to_merged:.3f}× "
                 f"({format_interval(rt.ratio_ci_low, rt.ratio_ci_high)}).")
    noise = aa_noise(bench)
    if noise:
        text += f" {noise}"
    return text


def answers(data: StudyRecords) -> str:
    """The report's "Answers" section: RQ1 (drift) and RQ2 (serving cost) in sentences."""
    out = ["## Answers", ""]
    rq1 = rq1_sentences(data)
    out.append("**RQ1 — does LoRA keep representations closer to the base than full fine-tuning?**")
    out += [""] + [f"- {s}" for s in rq1] if rq1 else ["", "No drift analysis in this study."]
    rq2 = rq2_sentence(data.bench)
    out += ["", "**RQ2 — what does serving adapters separately cost?**", "", f"- {rq2}" if rq2 else "- No serving benchmark."]
    return "\n".join(out)


def seeds_needed_text(info: SeedsNeeded | None) -> str:
    """e.g. "5 to ∞ (paired t, 80% power, from the 95% CI of d_z 0.11 to 1.9); exact test needs ≥ 5"."""
    if not info:
        return "–"
    if "t_range" not in info.model_fields_set:  # records written before the range existed
        if info.t is None:
            return info.note or "–"
        return f"{info.t} (paired t, {info.power:.0%} power); exact test needs ≥ {info.exact_floor}"
    fewest, most = info.t_range
    if fewest is None:
        return info.note or "–"
    low, high = info.effect_size_dz_ci
    span = f"{fewest}" if most == fewest else f"{fewest} to {'∞' if most is None else most}"
    return (f"{span} (paired t, {info.power:.0%} power, from the {info.confidence or 0.95:.0%} CI of d_z "
            f"{low:.2g} to {high:.2g}); exact test needs ≥ {info.exact_floor}")


def _verdict_row(task: str, v: StoredVerdict, metric: str | None) -> list[str]:
    second = v.secondary
    floor = second.min_attainable_p if second else None
    exact = (f"{short_test(second)}: {v.secondary_status}" + (f" (smallest p {format_p(floor)})" if floor else "")
             if second else "–")
    return [task, v.hypothesis, f"**{v.status}**" + ("" if v.tests_agree else " ⚠"),
            f"{_estimate_text(v, metric)}, {v.confidence:.0%} CI {_estimate_interval(v, metric)} "
            f"({v.ci_method})", v.uncertainty, short_test(v.test), *p_cells(v),
            exact, *(p_cells(v, "secondary") if second else ("–", "–")), family_cell(v),
            "yes" if robust(v) else "no", seeds_needed_text(v.seeds_needed)]


VERDICT_HEADER = ["task", "hypothesis", "verdict (primary test)", "estimate", "uncertainty over", "primary test",
                  "p raw", "p adjusted", "second test", "p raw", "p adjusted", "family (correction, size)",
                  "robust to normality", "seeds for 80% power"]


def verdict_table(data: StudyRecords) -> str:
    """The verdicts of every task whose models learned it, primary hypotheses first, one row each, each
    test's raw and adjusted p side by side; for a task whose models did not learn, one statement
    instead of a row per verdict (they would all say the same)."""
    rows: dict[bool, list[list[str]]] = {True: [], False: []}
    nulls: dict[str, str] = {}
    methods: dict[str, list[str]] = {}
    set_apart: list[str] = []
    decided: list[str] = []
    roles = has_roles(data)
    for task, d in data.drift.items():
        records = list(d.comparison.verdicts.values())
        learning = task_learning(data, task)
        if records and not learning.learned:
            set_apart.append(f"- **{task}**: no verdicts — the models did not learn the task (why: see Answers); "
                             "its p-values and effect sizes are not reported.")
            continue
        metric = main_metric(data, task)
        for undecided in records:
            if isinstance(undecided, NoVerdict):
                rows[True].append([task, "–", "not computed", undecided.error, *["–"] * (len(VERDICT_HEADER) - 4)])
        for v in verdict_records(d.comparison):
            nulls[v.hypothesis] = null_of(v)
            methods.setdefault(v.ci_method, []).append(v.hypothesis)
            rows[is_primary(v) or not roles].append(_verdict_row(task, v, metric))
        if records:
            decided.append(task)
    if not rows[True] and not rows[False]:
        return "\n".join(["## Verdicts", "", *set_apart]) if set_apart else ""
    intervals = "; ".join(f"{', '.join(dict.fromkeys(hs))}: {m}" for m, hs in methods.items())
    adjusted = any("p_adjusted" in v.model_fields_set for d in data.drift.values() for v in verdict_records(d.comparison))
    where = "on the adjusted p" if adjusted else "at its α"
    out = ["## Verdicts", "",
           f"Each verdict is decided by its primary test {where}; the second test of the same one-sided null (the exact "
           "sign-flip test beside the t-test) is shown with its own p" + (" raw and adjusted" if adjusted else "")
           + ", and ⚠ marks a verdict the two tests disagree on. 'Robust to normality': the decision is "
           f"{ROBUST_TEXT}. 'Uncertainty over' says what the interval and the test treat as random. 'Seeds for 80% "
           "power' plans a next study from the observed per-seed spread, at the family's strictest level.", "",
           *(line for sentence in family_sentences(data, decided) for line in (sentence, "")),
           f"How each interval was made: {intervals}.", ""]
    out += _compared_points(data, decided)
    for primary in (True, False):
        if rows[primary]:
            if roles:
                out += [f"**{'Primary' if primary else 'Secondary'} hypotheses**", ""]
            out += [table(VERDICT_HEADER, rows[primary]), ""]
    out += [f"- {h}: null hypothesis \"{n}\" (one-sided; rejecting it supports the claim)." for h, n in nulls.items()]
    if set_apart:
        out += ["", "Tasks without verdicts:", "", *set_apart]
    return "\n".join(out)


def _compared_points(data: StudyRecords, tasks: list[str]) -> list[str]:
    """Where a sweep chose the compared points: which, and where to read how."""
    out = []
    for task in tasks:
        d = data.drift[task]
        if d.selection:
            out.append(f"- {task}: the verdicts compare {recorded_primary(d.primary)} with {reference_of(d)}, each its method's "
                       "sweep point chosen by the declared rule (see Learning-rate sweep).")
    return [*out, ""] if out else []


def _estimate_interval(v: StoredVerdict, metric: str | None) -> str:
    """A verdict's interval on its estimate's scale: H1a in metric points (Matthews on its own scale), the others in %."""
    low, high = v.ci_low, v.ci_high
    if v.hypothesis == "H1a" and not is_percentage(metric):
        return format_interval(low, high, 3)
    percent = [None if x is None else 100 * x for x in (low, high)]
    return format_interval(percent[0], percent[1], 1) if v.hypothesis == "H1a" else format_bounds(percent, fmt=format_reduction)
