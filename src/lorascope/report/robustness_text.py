"""The report's answer to "does RQ1 depend on how drift is measured?": the verdicts' layer choice
stated, and each alternative measure's LoRA / full FT ratio (``drift.json``'s ``robustness``)."""

from __future__ import annotations

from lorascope.drift.record import DriftRecord, RobustnessRow
from lorascope.metrics import format_drift, format_interval, format_ratio
from lorascope.report.text import table, test_result

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


def _summary(task: str, rows: list[RobustnessRow]) -> str:
    intervals = [r.ratio.gm_ratio_ci for r in rows if r.ratio]
    if not intervals:
        return f"{task}: no measure could compare the pair ({rows[0].note if rows else 'no rows'})."
    less = [r for r in rows if r.ratio and r.direction == "lora_less"]
    below = [ci for ci in intervals if ci[1] is not None and ci[1] < 1]
    above = [ci for ci in intervals if ci[0] is not None and ci[0] > 1]
    compared = intervals
    return (f"{task}: LoRA drifts less than full fine-tuning by {len(less)} of {len(compared)} measures (geometric-"
            f"mean ratio below 1); the 95% interval lies below 1 for {len(below)} and above 1 for {len(above)}.")


def robustness_section(drift: dict[str, DriftRecord], not_learned: set[str] | frozenset[str] = frozenset()) -> str:
    """Per task, one row per drift measure: LoRA's and full FT's mean, their ratio over seed pairs with
    its interval and both tests; empty when no task's drift.json has the rows. A task whose models
    did not learn it (``not_learned``) has no rows: its drift is not read as a finding."""
    measured = {task: d.robustness for task, d in drift.items()
                if d.robustness and d.robustness.rows and task not in not_learned}
    if not measured:
        return ""
    out = ["### Does the answer depend on the measure?", "",
           layers_sentence(drift) + " Below, the same runs and samples measured other ways: linear CKA over the "
           "other choice of layers, orthogonal Procrustes distance, RBF-kernel CKA and mutual nearest neighbours "
           "(1 − the measure's similarity, or its distance, averaged over layers as the verdicts are). The ratio is "
           "LoRA / full fine-tuning, the geometric mean over seed pairs with its t interval; the tests are of the "
           "per-seed log ratios, two-sided. These rows are descriptive: their p-values are outside the verdicts' "
           "corrected family.", ""]
    rows, pairs = [], []
    for task, rob in measured.items():
        lora, full = rob.pair or ["lora", "full"]
        for r in rob.rows:
            ratio = r.ratio
            name = f"**{r.description}** (the verdicts')" if r.is_verdict_measure else r.description
            rows.append([task, name, format_drift(r.lora_mean), format_drift(r.full_mean),
                         f"{format_ratio(ratio.gm_ratio)} {format_interval(ratio.gm_ratio_ci[0], ratio.gm_ratio_ci[1])}" if ratio else r.note or "–",
                         test_result(ratio.sign_flip) if ratio else "–", test_result(ratio.t_test) if ratio else "–"])
        pairs.append(f"{task}: {lora} vs {full}")
    out += [table(["task", "measure", "LoRA", "full FT", "ratio LoRA / full [95% CI]", "sign-flip test", "t-test"], rows),
            "", f"Compared (the verdicts' pair): {'; '.join(pairs)}.", ""]
    out += [_summary(task, rob.rows) for task, rob in measured.items() if rob]
    return "\n".join(out)
