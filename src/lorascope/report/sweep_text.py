"""The learning-rate sweep section: each method's accuracy–drift frontier over its sweep points, the
comparison at matched accuracy, the method × setting interaction, and which point of each method the
verdicts compare, chosen by the study's declared rule. Only for tasks whose drift.json has a frontier."""

from __future__ import annotations

from functools import partial

from lorascope.drift.record import DriftRecord, MatchedComparison
from lorascope.metrics import format_bounds, format_drift, format_metric, format_metric_difference, format_share, format_significant
from lorascope.report.collect import StudyRecords
from lorascope.report.learning import main_metric, task_majority
from lorascope.report.templating import render_template
from lorascope.train.learned import LEARNED_MARGIN, at_majority_level

METHOD_NAMES = {"lora": "LoRA", "full": "full fine-tuning"}


def setting_text(value: object) -> str:
    """A swept value as the study file writes it: ``0.002``, ``2e-05``."""
    return format_significant(value, 6) if isinstance(value, (int, float)) else str(value)


def selected_labels(d: DriftRecord) -> set[str]:
    """The sweep points the verdicts compare (the declared rule's choice for each method)."""
    return {s.label for s in (d.selection or {}).values() if s.label}


def edge_notes(d: DriftRecord) -> list[str]:
    """A line for each method whose chosen point is its lowest or highest setting: the rule chose
    within the grid, and the best setting may lie beyond it."""
    table_rows = d.frontier.table if d.frontier else []
    out = []
    for method, chosen in (d.selection or {}).items():
        own = sorted((r for r in table_rows if r.method == method), key=lambda r: r.setting)
        label = chosen.label
        if len(own) < 2 or label not in (own[0].label, own[-1].label):
            continue
        end = "lowest" if label == own[0].label else "highest"
        out.append(f"- {METHOD_NAMES.get(method, method)}'s chosen point {label} is the {end} setting swept: the "
                   "best setting may lie beyond the grid.")
    return out


def overlap_notes(matched: MatchedComparison | None, majority: float | None, metric: str | None) -> list[str]:
    """A line when the accuracy range the frontiers are compared over lies, wholly or in part, at
    majority level (not ``LEARNED_MARGIN`` above the majority baseline, the report's one rule for
    "did not learn"): there the comparison is between models that did not learn the task."""
    if not matched or majority is None or matched.ratio is None:
        return []
    low, high = matched.overlap[:2]
    if low is None or high is None or not at_majority_level(low, majority):
        return []
    margin = format_metric_difference(metric, LEARNED_MARGIN, signed=False)
    where = f"the majority baseline ({format_metric(metric, majority)}) plus the learning margin ({margin})"
    if at_majority_level(high, majority):
        return [f"- The whole overlap ({format_metric(metric, low)}–{format_metric(metric, high)}) is below {where}: "
                "the frontiers are compared where neither method learned the task, so the ratio says nothing "
                "about how they differ on it."]
    line = majority + LEARNED_MARGIN
    share = (line - low) / (high - low)
    return [f"- {format_share(share)} of the overlap ({format_metric(metric, low)}–{format_metric(metric, line)} of "
            f"{format_metric(metric, low)}–{format_metric(metric, high)}) is below {where}: part of the ratio "
            "compares models that did not learn the task."]


def sweep_section(data: StudyRecords, figures: dict[str, str]) -> str:
    """The section, or "" when no task's drift.json has a frontier."""
    tasks = []
    for task, d in data.drift.items():
        frontier = d.frontier
        if not frontier:
            continue
        metric = main_metric(data, task)
        chosen, m = selected_labels(d), partial(format_metric, metric)
        rows = [[r.label + (" (selected)" if r.label in chosen else ""), METHOD_NAMES.get(r.method, r.method),
                 setting_text(r.setting), r.n_seeds, m(r.metric_mean), format_bounds(r.metric_ci, fmt=m),
                 format_drift(r.drift_gmean), format_bounds(r.drift_ci, fmt=format_drift)]
                for r in frontier.table]
        matched, interaction = frontier.matched, frontier.interaction
        tasks.append({"task": task, "rows": rows, "missing": frontier.missing, "seeds": frontier.seeds,
                      "matched": matched and matched.statement, "interaction": interaction and interaction.statement,
                      "overlap": overlap_notes(matched, task_majority(data, task), metric), "edges": edge_notes(d),
                      "selection": [{"method": METHOD_NAMES.get(method, method), "point": point,
                                     "scores": ", ".join(f"{label} {format_significant(value, 4)}" for label, value in point.values.items())}
                                    for method, point in (d.selection or {}).items() if point.label]})
    return render_template("sweep.md.j2", tasks=tasks, figures=figures) if tasks else ""
