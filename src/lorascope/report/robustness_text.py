"""The report's answer to "does RQ1 depend on how drift is measured?": the verdicts' layer choice
stated, and each alternative measure's LoRA / full FT ratio (``drift.json``'s ``robustness``)."""

from __future__ import annotations

from lorascope.drift.record import DriftRecord
from lorascope.metrics import format_bounds, format_drift, format_ratio
from lorascope.report.templating import render_template
from lorascope.report.text import test_result

LAYER_WORDS = {"all": "every layer, the embedding output included",
               "blocks": "the transformer blocks, the embedding output left out"}


def _layers(d: DriftRecord) -> str:
    return d.layers.verdicts if d.layers else "all"


def layers_sentence(drift: dict[str, DriftRecord]) -> str:
    """Which layers the verdicts' drift averages, per the ``layers`` each task's drift.json records
    (results without it averaged every layer)."""
    choices = {_layers(d) for d in drift.values()}
    if len(choices) != 1:
        return "The tasks' verdicts average different layers: " + "; ".join(
            f"{task}: {LAYER_WORDS[_layers(d)]}" for task, d in drift.items()) + "."
    return f"The verdicts average drift over {LAYER_WORDS[choices.pop()]} (`drift.layers`)."


def robustness_section(drift: dict[str, DriftRecord], not_learned: set[str] | frozenset[str] = frozenset()) -> str:
    """Per task, one row per drift measure: LoRA's and full FT's mean, their ratio over seed pairs with
    its interval and both tests, then how many measures find LoRA drifting less; "" when no task's
    drift.json has the rows. A task whose models did not learn it (``not_learned``) has no rows: its
    drift is not read as a finding."""
    measured = {task: d.robustness for task, d in drift.items()
                if d.robustness and d.robustness.rows and task not in not_learned}
    if not measured:
        return ""
    rows, pairs, summaries = [], [], []
    for task, rob in measured.items():
        for r in rob.rows:
            ratio = r.ratio
            name = f"**{r.description}** (the verdicts')" if r.is_verdict_measure else r.description
            rows.append([task, name, format_drift(r.lora_mean), format_drift(r.full_mean),
                         f"{format_ratio(ratio.gm_ratio)} {format_bounds(ratio.gm_ratio_ci)}" if ratio else r.note or "–",
                         test_result(ratio.sign_flip) if ratio else "–", test_result(ratio.t_test) if ratio else "–"])
        lora, full = rob.pair or ["lora", "full"]
        pairs.append(f"{task}: {lora} vs {full}")
        intervals = [r.ratio.gm_ratio_ci for r in rob.rows if r.ratio]
        summaries.append({"task": task, "note": rob.rows[0].note, "measures": len(intervals),
                          "less": sum(1 for r in rob.rows if r.ratio and r.direction == "lora_less"),
                          "below": sum(1 for ci in intervals if ci[1] is not None and ci[1] < 1),
                          "above": sum(1 for ci in intervals if ci[0] is not None and ci[0] > 1)})
    return render_template("robustness.md.j2", layers_sentence=layers_sentence(drift), rows=rows, pairs=pairs,
                           summaries=summaries)
