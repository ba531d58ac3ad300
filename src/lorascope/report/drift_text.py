"""The representation-drift section (RQ1): per-method drift with intervals over seeds and over
seeds and samples, the noise floor, the two-sided method comparison, per-run sample intervals,
per-layer tests and the pipeline controls."""

from __future__ import annotations

from lorascope.drift.record import DriftComparison, LogRatioSummary, MeanInterval, MeasureStats, ReductionInterval, StoredVerdict, Undefined
from lorascope.metrics import (
    format_bounds,
    format_interval,
    format_metric,
    format_number,
    format_ratio,
    format_reduction,
    format_reduction_interval,
    format_scientific,
    format_share,
    format_significant,
)
from lorascope.report.collect import StudyRecords
from lorascope.report.learning import main_metric, not_learned
from lorascope.report.limitations import noise_of, spread_text
from lorascope.report.reference import REFERENCE
from lorascope.report.robustness_text import layers_sentence, robustness_section
from lorascope.report.templating import render_template
from lorascope.report.text import seed_sorted, table, test_result


def _mean_sd(stat: MeasureStats | None) -> str:
    if not stat or stat.mean is None:
        return "–"
    return format_number(stat.mean) + (f" ± {format_number(stat.sd)}" if stat.sd is not None else "")


def _ci(bounds: list[float | None] | None) -> str:
    return format_interval(bounds[0], bounds[1]) if bounds else "–"


def method_table(data: StudyRecords) -> str:
    """The table of each task and method's drift, debiased drift and cosine with their intervals and noise floor."""
    rows = [[task, method, _mean_sd(s.drift), _ci(s.drift.ci_seeds), _ci(s.drift.ci_seeds_samples), _mean_sd(s.drift_debiased),
             _ci(s.drift_debiased.ci_seeds_samples), _mean_sd(s.cosine), spread_text(d.noise_floor.get(method)),
             ", ".join(f"{k} {format_number(v)}" for k, v in s.thirds.items()), REFERENCE.get(task, {}).get(f"drift_{method}", "–")]
            for task, d in data.drift.items() for method, s in d.methods.items()]
    return table(["task", "method", "drift (1−CKA), mean ± sd", "95% CI over seeds", "95% CI over seeds + samples",
                  "debiased drift", "95% CI over seeds + samples", "cosine to base", "noise floor: sd over seeds [95% CI]",
                  "early / middle / late", "reference drift*"], rows)


def _log_ratio(summary: LogRatioSummary | Undefined | None) -> LogRatioSummary | None:
    """The log-ratio summary where one could be made (None: too few pairs, or written before it was)."""
    return summary if isinstance(summary, LogRatioSummary) else None


def _seed_interval(c: DriftComparison) -> str:
    """Δ% with its interval over seeds: from the per-seed log ratios where drift.json has them, else the
    interval its "LoRA drifts less" verdict recorded, named by its method."""
    log_ratio = _log_ratio(c.log_ratio)
    if log_ratio and log_ratio.reduction_percent_ci:
        return format_bounds(log_ratio.reduction_percent_ci, fmt=format_reduction)
    lower = c.verdicts.get("lower")
    if not isinstance(lower, StoredVerdict):
        return "–"
    bounds = (None if x is None else 100 * x for x in (lower.ci_low, lower.ci_high))
    return f"{format_reduction_interval(*bounds)} ({lower.ci_method})"


def _hier(record: ReductionInterval | Undefined | None) -> str:
    return format_reduction_interval(*((record.low, record.high) if isinstance(record, ReductionInterval) else (None, None)))


def _debiased(c: DriftComparison) -> str:
    red = c.reduction_percent_debiased
    if red is None:
        return "–"
    log_ratio = _log_ratio(c.log_ratio_debiased)
    seeds = (f" {format_bounds(log_ratio.reduction_percent_ci, fmt=format_reduction)} over seeds"
             if log_ratio and log_ratio.reduction_percent_ci else "")
    return f"{format_reduction(red)}{seeds}; {_hier(c.reduction_ci_seeds_samples_debiased)} over seeds + samples"


def comparison_table(data: StudyRecords) -> str:
    """Per task whose models learned it: Δ% on the log scale (geometric-mean ratio with its t interval
    over seeds, asymmetric), over seeds and samples, the ratio of mean drifts beside it and the two-sided
    tests of the log ratios; then the drift differences' tests and Cohen's d. Below the tables, one line
    per task with one seed pair, per seed-noise caveat and per task whose models did not learn it (its
    tests and effect sizes are not shown)."""
    rows, diffs, untrained = [], [], not_learned(data)
    learned = {task: d.comparison for task, d in data.drift.items() if task not in untrained}
    for task, c in learned.items():
        red = c.reduction_percent
        log_ratio = _log_ratio(c.log_ratio)
        delta = c.mean_delta_ci_t if isinstance(c.mean_delta_ci_t, MeanInterval) else None
        tested = c.n_pairs >= 2
        # One seed pair: the tests' own errors ("deltas has 1 value(s)") would read as a fault; say why instead.
        none = "no test (one seed pair)"
        log_tests = ([test_result(log_ratio.t_test), test_result(log_ratio.sign_flip)] if log_ratio
                     else ["–", "–"]) if tested else [none, none]
        ratio = (f"{format_ratio(log_ratio.gm_ratio)} {format_bounds(log_ratio.gm_ratio_ci)}"
                 if log_ratio and log_ratio.gm_ratio is not None else "–")
        # Files written before the scale was recorded computed Δ% as the ratio of mean drifts.
        older = "reduction_scale" not in c.model_fields_set
        of_means = red if older and "reduction_percent_of_means" not in c.model_fields_set else c.reduction_percent_of_means
        rows.append([task, c.n_pairs, format_reduction(red), "ratio of mean drifts" if older else c.reduction_scale, ratio,
                     _seed_interval(c), _hier(c.reduction_ci_seeds_samples), format_reduction(of_means),
                     _debiased(c), REFERENCE.get(task, {}).get("reduction", "–"), *log_tests])
        diffs.append([task, *([test_result(c.paired_t), test_result(c.sign_flip), format_number(c.cohens_d, 2),
                               format_interval(delta.low if delta else None, delta.high if delta else None, 4)]
                              if tested else [none, none, "–", "–"])])
    return render_template("drift_comparison.md.j2", rows=rows, diffs=diffs,
                           one_pair=[task for task, c in learned.items() if c.n_pairs < 2],
                           caveats=[(task, caveat.text) for task, c in learned.items() if (caveat := noise_of(c))],
                           set_apart=[task for task in data.drift if task in untrained])


def per_run_table(data: StudyRecords) -> str:
    """The table of each run's dev metric and drift, each drift with its interval over samples."""
    rows = [[task, r.method, r.seed, format_metric(main_metric(data, task), r.metric),
             f"{format_number(r.mean_drift, 4)} {format_interval(r.mean_drift_ci[0], r.mean_drift_ci[1], 4)}",
             f"{format_number(r.mean_drift_debiased, 4)} {format_interval(r.mean_drift_debiased_ci[0], r.mean_drift_debiased_ci[1], 4)}",
             format_number(r.mean_cosine, 4)] for task, d in data.drift.items() for r in seed_sorted(d.runs)]
    return table(["task", "method", "seed", "dev main metric", "drift [95% CI over samples]",
                  "debiased drift [95% CI over samples]", "cosine"], rows)


def per_layer_text(data: StudyRecords) -> list[str]:
    """One line per task with per-layer tests: the layers where full − LoRA drift differs after Holm."""
    out, untrained = [], not_learned(data)
    for task, d in data.drift.items():
        per_layer = d.comparison.per_layer
        layers = per_layer.layers if per_layer else []
        if not per_layer or not layers or "reject_holm" not in layers[0].model_fields_set:
            continue
        if task in untrained:
            out.append(f"- {task}: per-layer tests not reported (the models did not learn the task).")
            continue
        hits = [str(row.layer) for row in layers if row.reject_holm]
        alpha = per_layer.alpha if per_layer.alpha is not None else 0.05  # files before it was recorded used 0.05
        out.append(f"- {task}: layers where full − LoRA drift differs (paired t-test per layer, two-sided, Holm over "
                   f"{len(layers)} layers at α = {format_significant(alpha, 6)}): {', '.join(hits) if hits else 'none'}.")
    return out


def controls_table(data: StudyRecords) -> str:
    """The table of every task's pipeline controls and whether each passed."""
    rows = [[task, c.name, c.expectation, format_scientific(c.max_drift), format_number(c.mean_drift_debiased),
             "pass" if c.passed else "**FAIL**"] for task, d in data.drift.items() for c in d.controls]
    return table(["task", "control", "expectation", "max drift over layers", "debiased drift", "result"], rows)


def drift_section(data: StudyRecords, figures: dict[str, str]) -> str:
    """The report's representation-drift section (RQ1), with ``figures`` (name -> path) where they were made."""
    settings = data.config.get("drift")
    settings = settings if isinstance(settings, dict) else {}
    reduction = settings.get("min_reduction", 0.2)
    learned = set(data.drift) - set(not_learned(data))
    return render_template(
        "drift.md.j2", drift=data.drift, pooling=str(settings.get("pooling", "mean")), layers_sentence=layers_sentence(data.drift),
        method_table=method_table(data), figures=figures, learned=learned,  # a table to explain: some task's models learned it
        log_ratios=any((s := _log_ratio(data.drift[t].comparison.log_ratio)) and s.gm_ratio is not None for t in learned),
        min_reduction=format_share(float(reduction) if isinstance(reduction, (int, float, str)) else 0.2),
        comparison=comparison_table(data), robustness=robustness_section(data.drift, set(data.drift) - learned),
        per_layer=per_layer_text(data), per_run_table=per_run_table(data), controls_table=controls_table(data))
