"""The report's text: a markdown document built from the collected artifacts, section by section."""

from __future__ import annotations

import numpy as np
from pydantic import JsonValue

from lorascope.drift.record import CrossedDifference, SeedsOnlyDifference
from lorascope.metrics import format_metric, format_metric_difference
from lorascope.records import SanityCheck, SanityRecord
from lorascope.report.answers import answers, verdict_table
from lorascope.report.collect import StudyRecords
from lorascope.report.drift_text import drift_section
from lorascope.report.learning import main_metric, majority_of, not_learned, reference_of
from lorascope.report.lenses_text import forgetting_section, lenses_summary, probes_section, weights_section
from lorascope.report.limitations import limitations
from lorascope.report.reference import REFERENCE
from lorascope.report.serving_text import serving_section
from lorascope.report.sweep_text import sweep_section
from lorascope.report.text import table, test_result
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
                     format_metric(main, base), gap, "–" if ref is None else f"{ref:.1f}%"])
    return ("## Task performance (dev set)\n\nEach run is scored on the same dev examples (n dev); the majority "
            "baseline predicts the training set's most frequent label on those examples. Accuracy and F1 are "
            "percentages and their differences percentage points; Matthews correlation stays on its own −1..1 scale."
            "\n\n" + table(
        ["task", "method", "metric", "n dev", "mean ± sd", "per seed", "majority baseline", "vs majority",
         "reference study*"], rows))


def sanity_checks(record: SanityRecord | None) -> str:
    """The protocol's overfitting checks in one paragraph: each (task, method), its final training loss
    and epochs; a failed check says what it may mean. "" when the study ran none."""
    if record is None or not record.results:
        return ""
    s = record.settings
    rule = (f"each method fits {s.get('samples')} training examples to a training loss under {s.get('threshold')} "
            f"within {s.get('max_epochs')} epochs")

    def one(r: SanityCheck) -> str:
        outcome = "passed" if r.passed else "**FAILED**"
        why = f"; {r.reason}" if r.reason else ""
        return f"{r.task} {display_name(r.method)} {outcome} (loss {r.final_loss:.3g} after {r.epochs_run} epochs{why})"

    text = f"Sanity checks ({rule}): " + "; ".join(one(r) for r in record.results) + "."
    if not record.passed:
        text += (" A method that cannot memorise a handful of examples points to a bug in the data, the "
                 "classification head or the optimiser set-up: read its results with that in mind.")
    return text


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
            notes.append(f"- {task}: {note}.")
    if not rows:
        return ""
    return "\n".join([
        "### LoRA − full fine-tuning on the dev metric", "",
        "Every run is scored on the same dev examples, so a difference measured on them carries their sampling error "
        "too: *over seeds* treats the dev examples as fixed (paired t over seed pairs); *over seeds and dev examples* "
        "adds their share (two-way random effects over seeds × examples, Satterthwaite df), from the runs' "
        "per-example predictions.", "",
        table(["task", "compared", "seed pairs", "mean difference", "95% CI over seeds", "test over seeds",
               "95% CI over seeds and dev examples", "test over seeds and dev examples"], rows), "", *notes]).rstrip()


def provenance_section(data: StudyRecords) -> str:
    """The report's "Provenance" section: versions, git revision, wall time per stage and the study's config."""
    prov = data.provenance or {}
    libraries = prov.get("libraries")
    libs = ", ".join(f"{k} {v}" for k, v in (libraries if isinstance(libraries, dict) else {}).items() if v)
    runs = len(data.timings.invocations) or 1  # older studies stored only their last invocation's times
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in data.timings.total_s.items())
    return "\n".join(["## Provenance", "", f"- lorascope {prov.get('lorascope_version')}, git {prov.get('git_revision')}",
                      f"- {libs}", f"- wall time per stage, summed over {runs} invocation(s): {timings or '–'}",
                      f"- study folder: `{data.study}`", "", "```yaml", _yaml(data.config), "```"])


def _yaml(cfg: dict[str, JsonValue]) -> str:
    import yaml

    dumped: str = yaml.safe_dump(cfg, sort_keys=False)
    return dumped.strip()


def _present(*sections: str) -> list[str]:
    """The sections a study has (a lens it did not run renders as ""), each followed by a blank line."""
    return [line for section in sections if section for line in (section, "")]


def render(data: StudyRecords, figures: dict[str, str]) -> str:
    """The whole report as Markdown; ``figures`` maps figure names to their paths relative to the report."""
    cfg = data.config

    def names(key: str) -> str:
        value = cfg.get(key)
        return ", ".join(map(str, value)) if isinstance(value, list) else ""

    parts = [f"# lorascope report: {cfg.get('name', 'study')}", "",
             f"Base model `{cfg.get('model')}`; tasks {names('tasks')}; methods {names('methods')}; "
             f"seeds {cfg.get('seeds')}.", "",
             answers(data), "", verdict_table(data), "", performance(data), "",
             *_present(sanity_checks(data.sanity), metric_differences(data)), drift_section(data, figures), "",
             *_present(sweep_section(data, figures), lenses_summary(data), variants_section(data, figures),
                       weights_section(data.weights, data), forgetting_section(data.forgetting, data),
                       probes_section(data.probes, data)),
             serving_section(data.bench, figures), "", limitations(data), "", provenance_section(data), "",
             "*Reference study: TinyLlama-1.1B on GLUE, L4 GPU (docs/protocol.md §7); shown for orientation, not as a target."]
    return "\n".join(parts) + "\n"
