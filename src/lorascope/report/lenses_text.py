"""The lenses besides representations (the weight lens: update size, rank, intruder dimensions; forgetting; probe
retention) and every lens side by side: the rows and values their templates in report/templates show."""

from __future__ import annotations

from lorascope.lenses.records import ForgettingRecord, MeasureComparison, PairComparison, ProbesRecord, WeightsRecord
from lorascope.metrics import format_number, format_p, format_share, format_significant
from lorascope.records import StoredTest
from lorascope.report.collect import StudyRecords
from lorascope.report.learning import reference_of, task_learning
from lorascope.report.templating import render_template
from lorascope.report.text import test_result
from lorascope.variants import display_name, recorded_primary
from lorascope.weight_update.scope import short_types

# What a test cell says where the compared models did not learn the task.
NOT_REPORTED = "not reported (did not learn)"

# The measures over the matrices LoRA adapted (the same ones for full fine-tuning): (key, row name, digits).
MEASURES = (
    ("relative_update", "relative update ‖ΔW‖/‖W₀‖", 4),
    ("stable_rank", "stable rank of ΔW", 2),
    ("entropy_rank", "entropy rank of ΔW", 2),
    ("intruders", "intruder dimensions (sum over matrices)", 1),
)


def _matrices(n: int) -> str:
    return f"{n} matri{'x' if n == 1 else 'ces'}"


def adapted_scope(w: WeightsRecord, label: str | None = None) -> str | None:
    """``q_proj, v_proj: 12 matrices``: the matrices ``label`` (default: the primary LoRA method)
    adapted, which the like-for-like measures read for it and for full FT; None where not recorded."""
    names = w.matrices_by_variant.get(label or w.comparison.primary) or w.matrices
    if not names:
        return None
    return f"{', '.join(short_types(names))}: {_matrices(len(names))}"


def whole_scope(w: WeightsRecord) -> str:
    """``15 matrices, embeddings included``: the backbone matrices the whole-model measures read."""
    return _matrices(w.scope.whole_model_matrices) + (", embeddings included" if w.scope.whole_model_embeddings else "")


def _whole_measures(w: WeightsRecord) -> list[tuple[str, str, str]]:
    """(key, row name, scope) of each whole-model measure the result has: all matrices together, and
    without the embeddings where there are some."""
    measures, embeddings = w.comparison.measures, len(w.scope.whole_model_embeddings)
    if "relative_update_whole" not in measures:
        return []
    found = [("relative_update_whole", "relative update ‖ΔW‖/‖W₀‖, all matrices together", "over the whole model "
              f"({whole_scope(w)})")]
    if embeddings and "relative_update_whole_without_embeddings" in measures:
        rest = _matrices(w.scope.whole_model_matrices - embeddings)
        found.append(("relative_update_whole_without_embeddings", f"the same without the embeddings ({rest})",
                      f"without the embeddings ({rest})"))
    return found


def _mean_sd(mean: float | None, sd: float | None, n: int, digits: int, scale: float) -> str:
    """"mean ± sd (n=k)" of one method's per-run values times ``scale``, "–" where it has none."""
    if mean is None:
        return "–"
    return format_number(scale * mean, digits) + (f" ± {format_number(scale * sd, digits)}" if sd is not None else "") + f" (n={n})"


def _row(name: str, entry: MeasureComparison, digits: int, learned: bool, scale: float = 1) -> list[str]:
    """A lens table row: each method's mean ± sd (times ``scale``) and the two tests, not reported where the
    models did not learn."""
    tests = ([test_result(entry.paired_t), test_result(entry.sign_flip)] if learned else [NOT_REPORTED, NOT_REPORTED])
    return [name, _mean_sd(entry.lora_mean, entry.lora_sd, entry.lora_n, digits, scale),
            _mean_sd(entry.full_mean, entry.full_sd, entry.full_n, digits, scale), *tests]


def _learned(data: StudyRecords | None, task: str) -> bool:
    """Whether the task's primary comparison learned (True without a collected study to ask)."""
    return data is None or task_learning(data, task).learned


def weights_section(weights: dict[str, WeightsRecord], data: StudyRecords | None = None) -> str:
    """Per task: a table of the like-for-like measures and one of the whole-model measures (mean ± sd
    over seeds per method, the full − LoRA tests over seed pairs), each headed by the matrices it reads,
    a sentence saying which method moved less in each scope, and the intruder count at each ε of the sweep.

    ``data``, the collected study, says which tasks' models did not learn: their tests are not reported.
    Results written before the whole-model measures existed show the like-for-like table only.
    """
    tasks = []
    for task, w in weights.items():
        learned, measures = _learned(data, task), w.comparison.measures
        rows = [_row(name, measures[key], digits, learned) for key, name, digits in MEASURES]
        if "intruders_matched" in measures:
            rows.append(_row(f"intruder dimensions at ‖ΔW‖/‖W₀‖ = {format_significant(w.matched_update.relative_update)} per matrix "
                             "(sum over matrices)", measures["intruders_matched"], 1, learned))
        # Five decimals: LoRA's update spread over the whole model is small.
        whole_rows = [_row(name, measures[key], 5, learned) for key, name, _ in _whole_measures(w)]
        tasks.append({"task": task, "learned": learned, "lora": display_name(w.comparison.primary), "rows": rows, "like": adapted_scope(w),
                      "whole": whole_scope(w), "whole_rows": whole_rows, "scope_sentence": scope_sentence(w, learned), **_intruder_sweep(w)})
    return render_template("weights.md.j2", first=next(iter(weights.values())), tasks=tasks) if tasks else ""


def _closer(lora: float, full: float, lora_name: str = "LoRA", lower_is_closer: bool = True) -> str:
    """Which method's mean is nearer the base: ``lora_name``, ``full FT``, or ``neither`` where they are equal."""
    return "neither" if lora == full else lora_name if (lora < full) == lower_is_closer else "full FT"


def _separates(p: float | None) -> bool:
    """Whether a lens's descriptive paired test tells the methods apart (p < DESCRIPTIVE_ALPHA)."""
    return p is not None and p < DESCRIPTIVE_ALPHA


def _moved_less(m: MeasureComparison, lora: str) -> tuple[float | None, str | None, bool]:
    """The paired t p of ``m``, which method's mean update is smaller (:func:`_closer`; None where a method was
    not measured) and whether the paired test separates them (:func:`_separates`)."""
    p = m.paired_t.p_value if m.paired_t else None
    if m.lora_mean is None or m.full_mean is None:
        return p, None, False
    return p, _closer(m.lora_mean, m.full_mean, lora), _separates(p)


def scope_sentence(w: WeightsRecord, learned: bool = True) -> str:
    """Which method moved less by relative update, in each scope the result has, each scope named
    with its matrices: "By weight update on the matrices LoRA adapts (q_proj, v_proj: 12 matrices),
    full FT moved less (…); over the whole model (…), LoRA moved less (…)." Where the models did not
    learn, the means only. Empty without a scope to name."""
    measures, lora, like = w.comparison.measures, display_name(w.comparison.primary), adapted_scope(w)
    if not like or "relative_update" not in measures:
        return ""
    scopes = [(f"on the matrices LoRA adapts ({like})", "relative_update"), *((s, k) for k, _, s in _whole_measures(w))]
    return render_template("weights_scope.md.j2", lora=lora, learned=learned, scopes=[
        (scope, measures[key], *_moved_less(measures[key], lora)) for scope, key in scopes])


def _intruder_sweep(w: WeightsRecord) -> dict[str, list[str]]:
    """``epsilons``: the ε of the sweep; ``sweep``: per method in name order, ``method: its mean intruder count per
    run at each ε``."""
    per_method: dict[str, list[dict[str, int]]] = {}
    for r in w.runs:
        per_method.setdefault(r.method, []).append(r.summary.intruders_by_epsilon)
    eps = list(w.runs[0].summary.intruders_by_epsilon) if w.runs else []
    return {"epsilons": eps, "sweep": [f"{m}: " + ", ".join(format_number(sum(c[e] for c in counts) / len(counts), 1) for e in eps)
                                       for m, counts in sorted(per_method.items())]}


# What each of the forgetting lens's controls checks (lorascope.lenses.forgetting), as the report says it.
FORGETTING_CONTROLS = {
    "base_backbone_reinserted": "the base's own backbone, put back, scores exactly as the base",
    "lora_at_init": "LoRA at initialisation, merged, scores exactly as the base",
    "chunked_loss_is_full_logits_loss": "the loss computed in chunks over the vocabulary is the full logits' loss",
    "lm_head_kept": "the scored LM head stays the base's, and with the input embeddings moved, the loss is the one "
                    "under the base's head held apart (a head re-tied to the embeddings scores visibly otherwise)",
    "lora_known_update": "a LoRA adapter with a known update merges to W₀ + (α/r)·B·A and scores as that",
    "backbone_is_the_runs_own": "each run's scored backbone is the one rebuilt from its own files",
}


def forgetting_section(forgetting: dict[str, ForgettingRecord], data: StudyRecords | None = None) -> str:
    """Per task: the base's held-out loss, each method's forgetting (mean ± sd over seeds) and the tests
    (not reported for a task whose models did not learn it, as ``data`` says)."""
    tasks = []
    for task, f in forgetting.items():
        learned = _learned(data, task)
        rows = [_row(name, f.comparison.measures[key], 4, learned)
                for key, name in (("forgetting", "forgetting (nats/token)"), ("loss", "held-out loss"))]
        tasks.append((task, f, learned, display_name(f.comparison.primary), rows))
    return render_template("forgetting.md.j2", first=next(iter(forgetting.values())), controls=FORGETTING_CONTROLS,
                           tasks=tasks) if tasks else ""


def probes_section(probes: dict[str, ProbesRecord], data: StudyRecords | None = None) -> str:
    """Per task: the base's probe accuracy on each other task, each method's retention and the tests
    (not reported for a task whose models did not learn it, as ``data`` says)."""
    tasks = []
    for task, p in probes.items():
        learned = _learned(data, task)
        rows = [_row(name, p.comparison.measures[key], 1, learned, scale=100) for name, key in
                (("mean retention (points)", "retention"), *((f"{t} (points)", f"retention_{t}") for t in p.probe_tasks))]
        base = "; ".join(f"{t} {format_share(p.base[t], 1)} (majority {format_share(p.majority[t], 1)})" for t in p.probe_tasks)
        tasks.append((task, p, learned, display_name(p.comparison.primary), rows, base))
    return render_template("probes.md.j2", first=next(iter(probes.values())), tasks=tasks) if tasks else ""


# (lens, where it is read, lower means closer to the base?). The weight lens's rows are named with
# the matrices they read where the result records them (see lens_name).
LENSES = (
    ("representation drift (1 − CKA)", "drift", True),
    ("weight update ‖ΔW‖/‖W₀‖", "weights:relative_update", True),
    ("weight update ‖ΔW‖/‖W₀‖, whole model", "weights:relative_update_whole", True),
    ("intruder dimensions", "weights:intruders", True),
    ("intruder dimensions at a matched update size", "weights:intruders_matched", True),
    ("forgetting (nats/token)", "forgetting:forgetting", True),
    ("probe retention (points)", "probes:retention", False),
)
DESCRIPTIVE_ALPHA = 0.05


def lens_values(data: StudyRecords, task: str, where: str, label: str | None = None
                ) -> tuple[float, float, float | None] | None:
    """(the LoRA method's mean, full FT's mean, two-sided paired t p over seed pairs) of one lens for
    one task, None where not measured.

    Args:
        label: the LoRA method compared with full FT (default: the primary one).
    """
    if where == "drift":
        d = data.drift.get(task)
        if not d:
            return None
        primary = recorded_primary(d.primary)
        label = label or primary
        drift = d.comparisons.get(label) or (d.comparison if label == primary else None)
        full = reference_of(d)
        lora_mean, full_mean = ((d.methods[label].drift.mean, d.methods[full].drift.mean)
                                if label in d.methods and full in d.methods else (None, None))
        if lora_mean is None or full_mean is None:
            return None
        test = drift.paired_t if drift else None
        return lora_mean, full_mean, test.p_value if isinstance(test, StoredTest) else None
    kind, measure = where.split(":")
    lens = data.lens(kind).get(task)
    if not lens:
        return None
    comparison: PairComparison | None = lens.comparison
    if label is not None and label != lens.comparison.primary:
        comparison = lens.comparison.variants.get(label)
    m = comparison.measures.get(measure) if comparison else None  # absent from results before the measure existed
    if m is None or m.lora_mean is None or m.full_mean is None:
        return None
    return m.lora_mean, m.full_mean, m.paired_t.p_value if m.paired_t else None


def lens_name(data: StudyRecords, task: str, name: str, where: str, label: str | None = None) -> str:
    """A lens's name as the side-by-side rows and sentences use it, with its scope read from the
    result itself: the layers drift averages, the matrices a weight measure reads (those ``label``
    adapted, or the whole model), the text forgetting scores, the tasks the probes read; the bare
    name where the result does not record it."""
    if where == "drift":
        drift = data.drift.get(task)
        layers = drift.layers.verdicts if drift and drift.layers else None
        chosen = {"all": "every layer, embedding output included", "blocks": "the blocks, embedding output left out"}
        return f"{name} over {chosen[layers]}" if layers in chosen else name
    if where.startswith("forgetting:"):
        forgetting = data.forgetting.get(task)
        return f"{name} on {forgetting.text_source}" if forgetting and forgetting.text_source else name
    if where.startswith("probes:"):
        probes = data.probes.get(task)
        return f"{name} on {', '.join(probes.probe_tasks)}" if probes and probes.probe_tasks else name
    w = data.weights.get(task)
    if w is None:
        return name
    measure = where.split(":")[1]
    if measure == "relative_update_whole":
        return f"weight update ‖ΔW‖/‖W₀‖ over the whole model ({whole_scope(w)})"
    like = adapted_scope(w, label)
    if not like:
        return name
    size = w.matched_update.relative_update
    if measure == "intruders_matched":
        return f"{name} on the matrices LoRA adapts ({like}; each ΔW rescaled to ‖ΔW‖/‖W₀‖ = {format_significant(size)})"
    return f"{name} on the matrices LoRA adapts ({like})"


def lens_verdicts(data: StudyRecords, task: str, label: str | None = None) -> tuple[list[list[str]], dict[str, str]]:
    """Per lens: a table row (lens, LoRA mean, full mean, who is closer, p) and the descriptive verdict
    (``LoRA``, ``full FT`` or ``unclear``) for one LoRA method against full FT.

    Where the models did not learn the task the rows keep the means (they describe the runs) but
    neither who is closer nor p, and there are no verdicts.
    """
    rows, verdicts = [], {}
    learned = task_learning(data, task, label).learned
    for name, where, lower_is_closer in LENSES:
        found = lens_values(data, task, where, label)
        if found is None:
            continue
        name = lens_name(data, task, name, where, label)
        lora, full, p = found
        scale = 100 if where.startswith("probes") else 1
        means = [name, format_significant(scale * lora, 4), format_significant(scale * full, 4)]
        if not learned:
            rows.append([*means, "–", NOT_REPORTED])
            continue
        closer, clear = _closer(lora, full, lower_is_closer=lower_is_closer), _separates(p)
        verdicts[name] = closer if clear and closer != "neither" else "unclear"
        rows.append([*means, closer, "–" if p is None else format_p(p) + (f" (< {format_significant(DESCRIPTIVE_ALPHA, 6)})" if clear else "")])
    return rows, verdicts


def agreement_sentence(verdicts: dict[str, str]) -> str:
    """Whether the lenses that separate the methods agree on which one stays closer to the base."""
    by: dict[str, list[str]] = {}  # in lens order, so the sentence reads the same on every run
    for lens, who in verdicts.items():
        if who != "unclear":
            by.setdefault(who, []).append(lens)
    return render_template("lenses_agreement.md.j2", by=by, lenses=len(verdicts), alpha=DESCRIPTIVE_ALPHA)


def lenses_summary(data: StudyRecords) -> str:
    """Per task, every lens side by side: which method stayed closer to the base, and whether the lenses agree."""
    tasks = []
    for task in sorted(set(data.drift) | set(data.weights) | set(data.forgetting) | set(data.probes)):
        rows, verdicts = lens_verdicts(data, task)
        if len(rows) >= 2:
            drift = data.drift.get(task)
            tasks.append((task, display_name(recorded_primary(drift.primary if drift else None)), rows, verdicts,
                          task_learning(data, task).learned))
    return render_template("lenses_summary.md.j2", tasks=tasks, alpha=DESCRIPTIVE_ALPHA, agreement_sentence=agreement_sentence) if tasks else ""
