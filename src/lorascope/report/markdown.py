"""The report's text: a markdown document built from the collected artifacts, section by section."""

from __future__ import annotations

import numpy as np
from pydantic import JsonValue

from lorascope.drift.record import CrossedDifference, SeedsOnlyDifference
from lorascope.metrics import format_metric, format_metric_difference, format_number
from lorascope.records import SanityRecord
from lorascope.report.answers import answers, verdict_table
from lorascope.report.collect import StudyRecords
from lorascope.report.drift_text import drift_section
from lorascope.report.learning import main_metric, majority_of, not_learned, reference_of
from lorascope.report.lenses_text import forgetting_section, lenses_summary, probes_section, weights_section
from lorascope.report.limitations import limitations
from lorascope.report.reference import REFERENCE
from lorascope.report.serving_text import serving_section
from lorascope.report.sweep_text import sweep_section
from lorascope.report.templating import render_template
from lorascope.report.text import test_result
from lorascope.report.variants_text import variants_section
from lorascope.run_folder import RunRecord
from lorascope.variants import display_name, recorded_primary


def performance(data: StudyRecords) -> str:
    """Per task and method: the dev main metric per seed and over seeds, against the majority baseline
    (a method below it is said to be below it)."""
    rows = []
    by: dict[tuple[str, str], list[RunRecord]] = {}
    for run in data.runs:
        by.setdefault((str(run.record.task), run.label), []).append(run.record)
    for (task, method), runs in sorted(by.items()):
        ok = sorted((r for r in runs if r.ok), key=lambda r: r.seed or 0)
        main = ok[0].main_metric if ok else None
        vals = np.array([r.main_value for r in ok], dtype=float) if ok else np.array([])
        per_seed = ", ".join(f"{r.seed}: {format_metric(main, r.main_value)}" for r in ok)
        failed = [f"{r.seed} ({r.reason})" for r in runs if not r.ok]
        base = majority_of(data, task, main)
        ref = REFERENCE.get(task, {}).get(f"metric_{method}")
        mean = float(vals.mean()) if vals.size else None
        mean_sd = format_metric(main, mean, float(vals.std(ddof=1)) if vals.size > 1 else None)
        gap = "–" if base is None or mean is None else format_metric_difference(main, mean - base)
        if base is not None and mean is not None and mean < base:
            gap += " (below majority)"
        n_dev = ", ".join(str(n) for n in sorted({r.n_eval for r in ok if r.n_eval})) or "–"
        rows.append([task, method, main or "–", n_dev, mean_sd, per_seed + (f"; failed: {', '.join(failed)}" if failed else ""),
                     format_metric(main, base), gap, "–" if ref is None else f"{format_number(ref, 1)}%"])
    return render_template("performance.md.j2", rows=rows)


def sanity_checks(record: SanityRecord | None) -> str:
    """The protocol's overfitting checks in one paragraph: each (task, method), its final training loss
    and epochs; a failed check says what it may mean. "" when the study ran none."""
    if record is None or not record.results:
        return ""
    return render_template("sanity.md.j2", record=record, settings=record.settings, display_name=display_name)


def _difference_interval(metric: str | None, record: SeedsOnlyDifference | CrossedDifference | None) -> str:
    if not record or record.low is None:
        return "–"
    return (f"[{format_metric_difference(metric, record.low)}, {format_metric_difference(metric, record.high)}]"
            .replace(" points,", ","))


def metric_differences(data: StudyRecords) -> str:
    """Per task whose models learned it: the mean LoRA − full main-metric difference with its interval and
    two-sided test over seed pairs (the dev examples fixed) and, where the runs stored per-example
    predictions, over seeds and dev examples; with drift.json's note where they did not."""
    rows, notes, untrained = [], [], not_learned(data)
    for task, d in data.drift.items():
        diff = d.comparison.metric_difference
        if not diff or task in untrained:
            continue
        metric = main_metric(data, task)
        seeds, both = diff.seeds_only, diff.seeds_and_examples
        rows.append([task, f"{recorded_primary(d.primary)} − {reference_of(d)}", seeds.n,
                     format_metric_difference(metric, diff.estimate), _difference_interval(metric, seeds),
                     test_result(seeds.test), _difference_interval(metric, both) if both else "not available",
                     test_result(both.test) if both else "–"])
        note = diff.note or d.dev_examples_note
        if note and not both:
            notes.append((task, note))
    return render_template("metric_differences.md.j2", rows=rows, notes=notes) if rows else ""


def provenance_section(data: StudyRecords) -> str:
    """The report's "Provenance" section: versions, git revision, wall time per stage and the study's config."""
    prov = data.provenance
    libs = ", ".join(f"{k} {v}" for k, v in prov.libraries.items() if v) if prov else ""
    runs = len(data.timings.invocations) or 1  # older studies stored only their last invocation's times
    timings = ", ".join(f"{k} {format_number(v, 0)} s" for k, v in data.timings.total_s.items())
    return render_template("provenance.md.j2", provenance=prov, libraries=libs, invocations=runs, timings=timings,
                           study=data.study, config_yaml=_yaml(data.config))


def _yaml(cfg: dict[str, JsonValue]) -> str:
    import yaml

    dumped: str = yaml.safe_dump(cfg, sort_keys=False)
    return dumped.strip()


def render(data: StudyRecords, figures: dict[str, str]) -> str:
    """The whole report as Markdown; ``figures`` maps figure names to their paths relative to the report."""
    cfg = data.config

    def names(key: str) -> str:
        value = cfg.get(key)
        return ", ".join(map(str, value)) if isinstance(value, list) else ""

    return render_template(
        "report.md.j2", config=cfg, names=names, answers=answers(data), verdict_table=verdict_table(data),
        performance=performance(data), sanity=sanity_checks(data.sanity), metric_differences=metric_differences(data),
        drift=drift_section(data, figures), sweep=sweep_section(data, figures), lenses_summary=lenses_summary(data),
        variants=variants_section(data, figures), weights=weights_section(data.weights, data),
        forgetting=forgetting_section(data.forgetting, data), probes=probes_section(data.probes, data),
        serving=serving_section(data.bench, figures), limitations=limitations(data),
        provenance=provenance_section(data)) + "\n"
