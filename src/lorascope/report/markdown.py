"""The report's text: a markdown document built from the collected artifacts, section by section."""

from __future__ import annotations

from typing import Any

import numpy as np

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
from lorascope.variants import display_name, primary_of


def performance(data: StudyRecords) -> str:
    """Per task and method: the dev main metric per seed and over seeds, against the majority baseline
    (a method below it is said to be below it)."""
    rows = []
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in data["runs"]:
        by.setdefault((r["task"], r["method"]), []).append(r)
    for (task, method), runs in sorted(by.items()):
        ok = sorted((r for r in runs if r["status"] == "ok"), key=lambda r: r["seed"])
        main = ok[0]["main_metric"] if ok else None
        vals = np.array([r["dev"][main] for r in ok]) if ok else np.array([])
        per_seed = ", ".join(f"{r['seed']}: {format_metric(main, r['dev'][main])}" for r in ok)
        failed = [f"{r['seed']} ({r.get('reason')})" for r in runs if r["status"] != "ok"]
        base = majority_of(data, task, main)
        ref = REFERENCE.get(task, {}).get(f"metric_{method}")
        mean = float(vals.mean()) if vals.size else None
        mean_sd = format_metric(main, mean, float(vals.std(ddof=1)) if vals.size > 1 else None)
        gap = "–" if base is None or mean is None else format_metric_difference(main, mean - base)
        if base is not None and mean is not None and mean < base:
            gap += " (below majority)"
        n_dev = ", ".join(str(n) for n in sorted({r["n_eval"] for r in ok if r.get("n_eval")})) or "–"
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


def _difference_interval(metric: str | None, record: dict[str, Any] | None) -> str:
    if not record or record.get("low") is None:
        return "–"
    return (f"[{format_metric_difference(metric, record['low'])}, {format_metric_difference(metric, record['high'])}]"
            .replace(" points,", ","))


def metric_differences(data: StudyRecords) -> str:
    """Per task whose models learned it: the mean LoRA − full main-metric difference with its interval and
    two-sided test over seed pairs (the dev examples fixed) and, where the runs stored per-example
    predictions, over seeds and dev examples; with drift.json's note where they did not."""
    rows, notes, untrained = [], [], not_learned(data)
    for task, d in data["drift"].items():
        diff = d["comparison"].get("metric_difference")
        if not diff or task in untrained:
            continue
        metric = main_metric(data, task)
        seeds, both = diff.get("seeds_only") or {}, diff.get("seeds_and_examples")
        rows.append([task, f"{primary_of(d)} − {reference_of(d)}", seeds.get("n", d["comparison"].get("n_pairs")),
                     format_metric_difference(metric, diff.get("estimate")), _difference_interval(metric, seeds),
                     test_result(seeds.get("test")),
                     _difference_interval(metric, both) if both else "not available",
                     test_result(both.get("test")) if both else "–"])
        note = diff.get("note") or d.get("dev_examples_note")
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
    prov = data.get("provenance") or {}
    libs = ", ".join(f"{k} {v}" for k, v in (prov.get("libraries") or {}).items() if v)
    stored = data["timings"]
    totals = stored.get("total_s", stored)  # older studies stored {stage: seconds} of the last invocation
    runs = len(stored.get("invocations", [])) or 1
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in totals.items())
    return "\n".join(["## Provenance", "", f"- lorascope {prov.get('lorascope_version')}, git {prov.get('git_revision')}",
                      f"- {libs}", f"- wall time per stage, summed over {runs} invocation(s): {timings or '–'}",
                      f"- study folder: `{data['study']}`", "", "```yaml", _yaml(data["config"]), "```"])


def _yaml(cfg: dict[str, Any]) -> str:
    import yaml

    dumped: str = yaml.safe_dump(cfg, sort_keys=False)
    return dumped.strip()


def _present(*sections: str) -> list[str]:
    """The sections a study has (a lens it did not run renders as ""), each followed by a blank line."""
    return [line for section in sections if section for line in (section, "")]


def render(data: StudyRecords, figures: dict[str, str]) -> str:
    """The whole report as Markdown; ``figures`` maps figure names to their paths relative to the report."""
    name = data["config"].get("name", "study")
    parts = [f"# lorascope report: {name}", "",
             f"Base model `{data['config'].get('model')}`; tasks {', '.join(data['config'].get('tasks', []))}; "
             f"methods {', '.join(data['config'].get('methods', []))}; seeds {data['config'].get('seeds')}.", "",
             answers(data), "", verdict_table(data), "", performance(data), "",
             *_present(sanity_checks(data.get("sanity")), metric_differences(data)), drift_section(data, figures), "",
             *_present(sweep_section(data, figures), lenses_summary(data), variants_section(data, figures),
                       weights_section(data.get("weights") or {}, data),
                       forgetting_section(data.get("forgetting") or {}, data), probes_section(data.get("probes") or {}, data)),
             serving_section(data["bench"], figures), "", limitations(data), "", provenance_section(data), "",
             "*Reference study: TinyLlama-1.1B on GLUE, L4 GPU (docs/protocol.md §7); shown for orientation, not as a target."]
    return "\n".join(parts) + "\n"
