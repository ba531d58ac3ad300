"""The lenses besides representations: the weight lens (update size, rank, intruder dimensions) and forgetting."""

from __future__ import annotations

from lorascope.lenses.records import ForgettingRecord, MeasureComparison, PairComparison, ProbesRecord, WeightsRecord
from lorascope.records import StoredTest
from lorascope.report.collect import StudyRecords
from lorascope.report.learning import reference_of, task_learning
from lorascope.report.text import table, test_result
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
    return _matrices(w.scope.whole_model_matrices) + (", embeddings included" if _embeddings(w) else "")


def _embeddings(w: WeightsRecord) -> int:
    """How many embedding matrices the whole-model scope holds."""
    return len(w.scope.whole_model_embeddings)


def _whole_measures(w: WeightsRecord) -> list[tuple[str, str, str]]:
    """(key, row name, scope) of each whole-model measure the result has: all matrices together, and
    without the embeddings where there are some."""
    n = w.scope.whole_model_matrices
    measures = w.comparison.measures
    if "relative_update_whole" not in measures:
        return []
    found = [("relative_update_whole", "relative update ‖ΔW‖/‖W₀‖, all matrices together", "over the whole model "
              f"({whole_scope(w)})")]
    if _embeddings(w) and "relative_update_whole_without_embeddings" in measures:
        rest = _matrices(n - _embeddings(w))
        found.append(("relative_update_whole_without_embeddings", f"the same without the embeddings ({rest})",
                      f"without the embeddings ({rest})"))
    return found


def _mean_sd(mean: float | None, sd: float | None, n: int, digits: int) -> str:
    """"mean ± sd (n=k)" of one method's per-run values, "–" where it has none."""
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "") + f" (n={n})"


def _row(name: str, entry: MeasureComparison, digits: int, learned: bool, scale: float = 1) -> list[str]:
    """A lens table row: each method's mean ± sd (times ``scale``) and the two tests, not reported where the
    models did not learn."""
    def times(x: float | None) -> float | None:
        return None if x is None else scale * x

    tests = ([test_result(entry.paired_t), test_result(entry.sign_flip)] if learned else [NOT_REPORTED, NOT_REPORTED])
    return [name, _mean_sd(times(entry.lora_mean), times(entry.lora_sd), entry.lora_n, digits),
            _mean_sd(times(entry.full_mean), times(entry.full_sd), entry.full_n, digits), *tests]


def _learned(data: StudyRecords | None, task: str) -> bool:
    """Whether the task's primary comparison learned (True without a collected study to ask)."""
    return data is None or task_learning(data, task).learned


def _untrained_note(data: StudyRecords | None, task: str) -> list[str]:
    """The line above a lens table whose tests are not reported, or nothing."""
    if _learned(data, task):
        return []
    return ["The models did not learn this task (see Answers): the means describe the runs; no test is reported.", ""]


def weights_section(weights: dict[str, WeightsRecord], data: StudyRecords | None = None) -> str:
    """Per task: a table of the like-for-like measures and one of the whole-model measures (mean ± sd
    over seeds per method, the full − LoRA tests over seed pairs), each headed by the matrices it reads,
    and a sentence saying which method moved less in each scope.

    ``data``, the collected study, says which tasks' models did not learn: their tests are not reported.
    Results written before the whole-model measures existed show the like-for-like table only.
    """
    if not weights:
        return ""
    first = next(iter(weights.values()))
    cfg = first.config
    out = ["## Weight lens", "",
           f"Like for like: the matrices the LoRA runs adapted ({len(first.matrices)} per run, the same ones for full "
           "fine-tuning), each compared with the base: relative update (the mean over matrices of ‖ΔW‖_F/‖W₀‖_F), the "
           "stable rank ‖ΔW‖_F²/‖ΔW‖₂² and entropy effective rank of the update (LoRA's ΔW is its merged (α/r)·B·A), "
           f"and intruder dimensions — of the fine-tuned matrix's top {cfg['top_k']} singular vectors, those whose "
           f"largest |cosine| with any singular vector of the base matrix is below ε = {cfg['epsilon']:g} "
           "(Shuttleworth et al., 2025)."]
    out[-1] += (" The plain count grows with the size of the update as well as with its direction, so intruders "
                "are also counted with every matrix's ΔW rescaled to one common ‖ΔW‖_F/‖W₀‖_F, the geometric mean "
                "of the compared runs' relative updates: the same count for ΔW and for any multiple of it.")
    out[-1] += (" Whole model: every 2-D matrix of the backbone (the task's new head left out), read from each "
                "full run's saved model; LoRA's ΔW there is its merged update on the matrices it adapted and zero "
                "elsewhere. Its relative update is ‖ΔW‖_F/‖W₀‖_F of all those matrices together; the rank and "
                "intruder measures are computed on the like-for-like matrices only.")
    out[-1] += (" Mean ± sd over seeds; the tests are two-sided, over seed pairs, of the null \"full − LoRA is 0\" "
                "(no multiple-testing correction: they describe, the verdicts above decide).")
    out.append("")
    for task, w in weights.items():
        learned = _learned(data, task)
        measures = w.comparison.measures
        lora = display_name(w.comparison.primary)
        header = ["measure", lora, "full FT", "paired t-test", "exact sign-flip"]
        like = adapted_scope(w)
        rows = [_row(name, measures[key], digits, learned) for key, name, digits in MEASURES]
        size = w.matched_update.relative_update
        if "intruders_matched" in measures:
            rows.append(_row(f"intruder dimensions at ‖ΔW‖/‖W₀‖ = {size:.3g} per matrix (sum over matrices)",
                             measures["intruders_matched"], 1, learned))
        out += [f"**{task}**", "", *_untrained_note(data, task)]
        if like:
            out += [f"On the matrices LoRA adapts ({like}), the same ones for full FT:", ""]
        out += [table(header, rows), ""]
        # Five decimals: LoRA's update spread over the whole model is small.
        whole_rows = [_row(name, measures[key], 5, learned) for key, name, _ in _whole_measures(w)]
        if whole_rows:
            out += [f"Over the whole model ({whole_scope(w)}):", "", table(header, whole_rows), ""]
        said = scope_sentence(w, learned)
        if said:
            out += [said, ""]
        sweep = _sweep_row(w)
        if sweep:
            out += [sweep, ""]
    return "\n".join(out).rstrip()


def _moved_less(entry: MeasureComparison, lora: str, learned: bool) -> str:
    """"full FT moved less (LoRA 0.0096, full FT 0.0021; paired t p = 2e-08)": which method's mean update
    is smaller, and whether the paired test separates them; the means alone where the models did not learn."""
    lora_mean, full_mean = entry.lora_mean, entry.full_mean
    if lora_mean is None or full_mean is None:
        return "not measured for both methods"
    means = f"{lora} {lora_mean:.4g}, full FT {full_mean:.4g}"
    if not learned:
        return means
    p = entry.paired_t.p_value if entry.paired_t else None
    test = "no paired test" if p is None else f"paired t p = {p:.3g}"
    if lora_mean == full_mean:
        return f"neither moved less ({means}; {test})"
    who = lora if lora_mean < full_mean else "full FT"
    if p is not None and p < DESCRIPTIVE_ALPHA:
        return f"{who} moved less ({means}; {test})"
    return f"{who} moved less on average but not clearly ({means}; {test})"


def scope_sentence(w: WeightsRecord, learned: bool = True) -> str:
    """Which method moved less by relative update, in each scope the result has, each scope named
    with its matrices: "By weight update on the matrices LoRA adapts (q_proj, v_proj: 12 matrices),
    full FT moved less (…); over the whole model (…), LoRA moved less (…)." Where the models did not
    learn, the means only. Empty without a scope to name."""
    measures = w.comparison.measures
    lora = display_name(w.comparison.primary)
    like = adapted_scope(w)
    if not like or "relative_update" not in measures:
        return ""
    parts = [f"By weight update on the matrices LoRA adapts ({like}), "
             + _moved_less(measures["relative_update"], lora, learned)]
    parts += [f"{scope}, {_moved_less(measures[key], lora, learned)}" for key, _, scope in _whole_measures(w)]
    return "; ".join(parts) + ("." if learned else " (means only: the models did not learn the task).")


def _sweep_row(w: WeightsRecord) -> str:
    """Intruders per run at each ε of the sweep, mean per method: how the count depends on the threshold."""
    per_method: dict[str, list[dict[str, int]]] = {}
    for r in w.runs:
        per_method.setdefault(r.method, []).append(r.summary.intruders_by_epsilon)
    if not per_method:
        return ""
    eps = list(next(iter(per_method.values()))[0])
    parts = []
    for method, counts in sorted(per_method.items()):
        means = [sum(c[e] for c in counts) / len(counts) for e in eps]
        parts.append(f"{method}: " + ", ".join(f"{m:.1f}" for m in means))
    return f"Intruders at ε = {', '.join(eps)} (mean per run) — " + "; ".join(parts) + "."


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
    if not forgetting:
        return ""
    first = next(iter(forgetting.values()))
    out = ["## Forgetting", "",
           "How well each fine-tuned backbone still models held-out text, put back under the base model's own "
           f"language-model head: mean next-token loss on {first.n_texts} passages of {first.text_source}. "
           "Forgetting = the run's loss − the base's, in nats per token (0: nothing forgotten). Controls, each of "
           "which stops the lens when it fails: "
           + "; ".join(f"{FORGETTING_CONTROLS.get(c.name, c.name)} ({c.name}: {'pass' if c.passed else 'FAIL'})"
                       for c in first.controls) + ".", ""]
    for task, f in forgetting.items():
        rows = [_row(name, f.comparison.measures[key], 4, _learned(data, task))
                for key, name in (("forgetting", "forgetting (nats/token)"), ("loss", "held-out loss"))]
        out += [f"**{task}** (base loss {f.base_loss:.4f}, perplexity {f.base_perplexity:.2f})", "",
                *_untrained_note(data, task),
                table(["measure", display_name(f.comparison.primary), "full FT", "paired t-test", "exact sign-flip"],
                      rows), ""]
    return "\n".join(out).rstrip()


def probes_section(probes: dict[str, ProbesRecord], data: StudyRecords | None = None) -> str:
    """Per task: the base's probe accuracy on each other task, each method's retention and the tests
    (not reported for a task whose models did not learn it, as ``data`` says)."""
    if not probes:
        return ""
    first = next(iter(probes.values()))
    cfg = first.config
    out = ["## Probe retention", "",
           "How much of *other* tasks' information each fine-tuned model keeps usable: a logistic-regression probe "
           f"(standardised features, C = {cfg['c']:g}, never tuned) fitted on the mean-pooled last-layer states of "
           f"{cfg['n_train']} training examples of each probe task and scored on {cfg['n_dev']} of its dev examples. "
           "Retention = the run's probe accuracy − the base's, in points (0: as usable as in the base). Control: LoRA "
           "at initialisation gives the base's features exactly "
           f"({', '.join(c.name + (' pass' if c.passed else ' FAIL') for c in first.controls)}).", ""]
    for task, p in probes.items():
        base = "; ".join(f"{t} {100 * p.base[t]:.1f}% (majority {100 * p.majority[t]:.1f}%)" for t in p.probe_tasks)
        rows = [_row("mean retention (points)" if key == "retention" else f"{key.removeprefix('retention_')} (points)",
                     p.comparison.measures[key], 1, _learned(data, task), scale=100)
                for key in ("retention", *(f"retention_{t}" for t in p.probe_tasks))]
        out += [f"**{task}** — base probe accuracy: {base}", "", *_untrained_note(data, task)]
        if p.uninformative:
            out += [f"The base's probe does not beat the majority label on {', '.join(p.uninformative)}: "
                    "retention there says nothing.", ""]
        out += [table(["probe task", display_name(p.comparison.primary), "full FT", "paired t-test",
                       "exact sign-flip"], rows), ""]
    return "\n".join(out).rstrip()


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
        return f"{name} on the matrices LoRA adapts ({like}; each ΔW rescaled to ‖ΔW‖/‖W₀‖ = {size:.3g})"
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
        if not learned:
            rows.append([name, f"{scale * lora:.4g}", f"{scale * full:.4g}", "–", NOT_REPORTED])
            continue
        if lora == full:
            closer = "neither"
        else:
            closer = "LoRA" if (lora < full) == lower_is_closer else "full FT"
        clear = p is not None and p < DESCRIPTIVE_ALPHA
        verdicts[name] = closer if clear and closer != "neither" else "unclear"
        rows.append([name, f"{scale * lora:.4g}", f"{scale * full:.4g}", closer,
                     "–" if p is None else f"{p:.3g}" + (" (< 0.05)" if clear else "")])
    return rows, verdicts


def agreement_sentence(verdicts: dict[str, str]) -> str:
    """Whether the lenses that separate the methods agree on which one stays closer to the base."""
    decided = {k: v for k, v in verdicts.items() if v != "unclear"}
    if not decided:
        return "No lens separates the methods clearly (every paired t p ≥ 0.05)."
    if len(decided) == 1:
        (lens, who), = decided.items()
        return f"Only one lens separates the methods: by {lens}, {who} stays closer to the base; the others are unclear."
    if len(set(decided.values())) == 1:
        who = next(iter(decided.values()))
        return (f"The lenses that separate the methods agree: {who} stays closer to the base "
                f"({', '.join(decided)}); the others are unclear." if len(decided) < len(verdicts) else
                f"Every lens agrees: {who} stays closer to the base.")
    by: dict[str, list[str]] = {}  # in lens order, so the sentence reads the same on every run
    for lens, who in decided.items():
        by.setdefault(who, []).append(lens)
    return "The lenses disagree: " + "; ".join(f"{w} stays closer by {', '.join(ks)}" for w, ks in by.items()) + "."


def lenses_summary(data: StudyRecords) -> str:
    """Per task, every lens side by side: which method stayed closer to the base, and whether the lenses agree."""
    tasks = sorted(set(data.drift) | set(data.weights) | set(data.forgetting) | set(data.probes))
    blocks = []
    for task in tasks:
        rows, verdicts = lens_verdicts(data, task)
        if len(rows) < 2:
            continue
        drift = data.drift.get(task)
        lora = display_name(recorded_primary(drift.primary if drift else None))
        learning = task_learning(data, task)
        said = agreement_sentence(verdicts) if learning.learned else (
            "Not compared: the models did not learn the task (see Answers); the means describe the runs only.")
        blocks += [f"**{task}**", "", table(["lens", lora, "full FT", "closer to the base", "paired t p (two-sided)"], rows),
                   "", said, ""]
    if not blocks:
        return ""
    return "\n".join(["## Lenses side by side", "",
                      "Each lens's mean over seeds per method, which method stayed closer to the base model, and the "
                      "two-sided paired t-test over seed pairs of \"no difference\" — descriptive, uncorrected "
                      f"(α = {DESCRIPTIVE_ALPHA:g} per row): the verdicts above are the corrected tests.", "", *blocks]).rstrip()
