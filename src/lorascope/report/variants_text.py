"""The method-variants section: every LoRA variant of a study beside full fine-tuning, through every lens."""

from __future__ import annotations

from pydantic import JsonValue

from lorascope.metrics import format_metric, format_p, format_significant
from lorascope.report.collect import StudyRecords
from lorascope.report.learning import main_metric, reference_of, task_learning
from lorascope.report.lenses_text import LENSES, agreement_sentence, lens_values, lens_verdicts
from lorascope.report.templating import render_template


def describe_settings(settings: dict[str, JsonValue] | None) -> str:
    """``r 8, α 16, q_proj/v_proj`` (+ ``rsLoRA``, ``DoRA``) for a LoRA variant, ``every weight`` for full FT."""
    if not settings:
        return "–"
    if settings.get("method") != "lora":
        return "every weight"
    targets = settings.get("lora_targets")
    where = "default targets" if not targets else "/".join(map(str, targets)) if isinstance(targets, list) else str(targets)
    flags = [name for key, name in (("lora_rslora", "rsLoRA"), ("lora_dora", "DoRA")) if settings.get(key)]
    alpha = settings.get("lora_alpha")
    alpha_text = format_significant(alpha, 6) if isinstance(alpha, (int, float)) else alpha
    return ", ".join([f"r {settings.get('lora_r')}", f"α {alpha_text}", where, *flags])


def _cell(found: tuple[float, float, float | None] | None, scale: float, learned: bool = True) -> str:
    """"variant vs full (p …)"; without p where the models did not learn the task."""
    if found is None:
        return "–"
    lora, full, p = found
    means = f"{format_significant(scale * lora, 4)} vs {format_significant(scale * full, 4)}"
    return means + ("" if p is None or not learned else f" (p {format_p(p)})")


def variants_section(data: StudyRecords, figures: dict[str, str]) -> str:
    """Per task with more than one method compared with full FT: one row per method, every lens as
    "method vs full FT (two-sided paired t p)", whether the lenses agree for that method, and the
    lenses-by-rank figure where the variants differ in rank."""
    tasks = []
    for task, d in data.drift.items():
        labels = list(d.comparisons)
        if len(labels) < 2:
            continue  # one LoRA method: the sections above say everything
        lenses = [(name, where) for name, where, _ in LENSES if any(lens_values(data, task, where, label) for label in labels)]
        metric, rows, methods = main_metric(data, task), [], []
        for label in labels:
            summary, learning = d.methods.get(label), task_learning(data, task, label)
            rows.append([label, describe_settings(d.variants.get(label)), format_metric(metric, summary.metric.mean if summary else None),
                         *(_cell(lens_values(data, task, where, label), 100 if where.startswith("probes") else 1,
                                 learning.learned) for _, where in lenses)])
            methods.append((label, learning, lens_verdicts(data, task, label)[1]))
        full = d.methods.get(reference_of(d))
        tasks.append((task, metric, full.metric.mean if full else None, [name for name, _ in lenses], rows, methods))
    return render_template("variants.md.j2", tasks=tasks, figures=figures, agreement_sentence=agreement_sentence) if tasks else ""
