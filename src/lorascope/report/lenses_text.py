"""The lenses besides representations: the weight lens (update size, rank, intruder dimensions) and forgetting."""

from __future__ import annotations

from typing import Any

from lorascope.report.learning import reference_of, task_learning
from lorascope.report.text import table, test_result
from lorascope.variants import display_name, primary_of

# What a test cell says where the compared models did not learn the task.
NOT_REPORTED = "not reported (did not learn)"

MEASURES = (
    ("relative_update", "relative update ‖ΔW‖/‖W₀‖", 4),
    ("stable_rank", "stable rank of ΔW", 2),
    ("entropy_rank", "entropy rank of ΔW", 2),
    ("intruders", "intruder dimensions (sum over matrices)", 1),
)


def _mean_sd(entry: dict[str, Any], method: str, digits: int) -> str:
    """"mean ± sd (n=k)" of one method's per-run values, "–" where it has none."""
    mean, sd, n = entry.get(f"{method}_mean"), entry.get(f"{method}_sd"), entry.get(f"{method}_n", 0)
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "") + f" (n={n})"


def _tests(entry: dict[str, Any], learned: bool) -> list[str]:
    """The paired t-test and exact sign-flip cells of a lens row; not reported where the models did not learn."""
    if not learned:
        return [NOT_REPORTED, NOT_REPORTED]
    return [test_result(entry.get("paired_t")), test_result(entry.get("sign_flip"))]


def _learned(data: dict[str, Any] | None, task: str) -> bool:
    """Whether the task's primary comparison learned (True without a collected study to ask)."""
    return data is None or task_learning(data, task).learned


def _untrained_note(data: dict[str, Any] | None, task: str) -> list[str]:
    """The line above a lens table whose tests are not reported, or nothing."""
    if _learned(data, task):
        return []
    return ["The models did not learn this task (see Answers): the means describe the runs; no test is reported.", ""]


def weights_section(weights: dict[str, dict[str, Any]], data: dict[str, Any] | None = None) -> str:
    """One table per task (mean ± sd over seeds per method, and the full − LoRA tests over seed pairs).

    ``data``, the collected study, says which tasks' models did not learn: their tests are not reported.
    """
    if not weights:
        return ""
    first = next(iter(weights.values()))
    cfg = first["config"]
    out = ["## Weight lens", "",
           f"The matrices the LoRA runs adapted ({len(first['matrices'])} per run, the same ones for full fine-tuning), "
           "each compared with the base: relative update, the stable rank ‖ΔW‖_F²/‖ΔW‖₂² and entropy effective rank "
           "of the update (LoRA's ΔW is its merged (α/r)·B·A), and intruder dimensions — of the fine-tuned matrix's "
           f"top {cfg['top_k']} singular vectors, those whose largest |cosine| with any singular vector of the base "
           f"matrix is below ε = {cfg['epsilon']:g} (Shuttleworth et al., 2025). Mean ± sd over seeds; the tests are "
           "two-sided, over seed pairs, of the null \"full − LoRA is 0\" (no multiple-testing correction: they "
           "describe, the verdicts above decide).", ""]
    for task, w in weights.items():
        rows = []
        for key, name, digits in MEASURES:
            entry = w["comparison"]["measures"][key]
            rows.append([name, _mean_sd(entry, "lora", digits), _mean_sd(entry, "full", digits),
                         *_tests(entry, _learned(data, task))])
        lora = display_name(primary_of(w["comparison"]))
        out += [f"**{task}**", "", *_untrained_note(data, task),
                table(["measure", lora, "full FT", "paired t-test", "exact sign-flip"], rows), ""]
        sweep = _sweep_row(w)
        if sweep:
            out += [sweep, ""]
    return "\n".join(out).rstrip()


def _sweep_row(w: dict[str, Any]) -> str:
    """Intruders per run at each ε of the sweep, mean per method: how the count depends on the threshold."""
    per_method: dict[str, list[dict[str, int]]] = {}
    for r in w["runs"]:
        per_method.setdefault(r["method"], []).append(r["summary"]["intruders_by_epsilon"])
    if not per_method:
        return ""
    eps = list(next(iter(per_method.values()))[0])
    parts = []
    for method, counts in sorted(per_method.items()):
        means = [sum(c[e] for c in counts) / len(counts) for e in eps]
        parts.append(f"{method}: " + ", ".join(f"{m:.1f}" for m in means))
    return f"Intruders at ε = {', '.join(eps)} (mean per run) — " + "; ".join(parts) + "."


def forgetting_section(forgetting: dict[str, dict[str, Any]], data: dict[str, Any] | None = None) -> str:
    """Per task: the base's held-out loss, each method's forgetting (mean ± sd over seeds) and the tests
    (not reported for a task whose models did not learn it, as ``data`` says)."""
    if not forgetting:
        return ""
    first = next(iter(forgetting.values()))
    out = ["## Forgetting", "",
           "How well each fine-tuned backbone still models held-out text, put back under the base model's own "
           f"language-model head: mean next-token loss on {first['n_texts']} passages of {first['text_source']}. "
           "Forgetting = the run's loss − the base's, in nats per token (0: nothing forgotten). Controls: the base's "
           "own backbone reinserted, and LoRA at initialisation merged, both score exactly as the base "
           f"({', '.join(c['name'] + (' pass' if c['passed'] else ' FAIL') for c in first['controls'])}).", ""]
    for task, f in forgetting.items():
        rows = []
        for key, name, digits in (("forgetting", "forgetting (nats/token)", 4), ("loss", "held-out loss", 4)):
            entry = f["comparison"]["measures"][key]
            rows.append([name, _mean_sd(entry, "lora", digits), _mean_sd(entry, "full", digits),
                         *_tests(entry, _learned(data, task))])
        out += [f"**{task}** (base loss {f['base_loss']:.4f}, perplexity {f['base_perplexity']:.2f})", "",
                *_untrained_note(data, task),
                table(["measure", display_name(primary_of(f["comparison"])), "full FT", "paired t-test", "exact sign-flip"],
                      rows), ""]
    return "\n".join(out).rstrip()


def probes_section(probes: dict[str, dict[str, Any]], data: dict[str, Any] | None = None) -> str:
    """Per task: the base's probe accuracy on each other task, each method's retention and the tests
    (not reported for a task whose models did not learn it, as ``data`` says)."""
    if not probes:
        return ""
    first = next(iter(probes.values()))
    cfg = first["config"]
    out = ["## Probe retention", "",
           "How much of *other* tasks' information each fine-tuned model keeps usable: a logistic-regression probe "
           f"(standardised features, C = {cfg['c']:g}, never tuned) fitted on the mean-pooled last-layer states of "
           f"{cfg['n_train']} training examples of each probe task and scored on {cfg['n_dev']} of its dev examples. "
           "Retention = the run's probe accuracy − the base's, in points (0: as usable as in the base). Control: LoRA "
           "at initialisation gives the base's features exactly "
           f"({', '.join(c['name'] + (' pass' if c['passed'] else ' FAIL') for c in first['controls'])}).", ""]
    for task, p in probes.items():
        base = "; ".join(f"{t} {100 * p['base'][t]:.1f}% (majority {100 * p['majority'][t]:.1f}%)" for t in p["probe_tasks"])
        rows = []
        for key in ("retention", *(f"retention_{t}" for t in p["probe_tasks"])):
            entry = {k: (100 * v if isinstance(v, float) and k.endswith(("_mean", "_sd")) else v)
                     for k, v in p["comparison"]["measures"][key].items()}
            name = "mean retention (points)" if key == "retention" else f"{key.removeprefix('retention_')} (points)"
            rows.append([name, _mean_sd(entry, "lora", 1), _mean_sd(entry, "full", 1),
                         *_tests(entry, _learned(data, task))])
        out += [f"**{task}** — base probe accuracy: {base}", "", *_untrained_note(data, task)]
        if p["uninformative"]:
            out += [f"The base's probe does not beat the majority label on {', '.join(p['uninformative'])}: "
                    "retention there says nothing.", ""]
        out += [table(["probe task", display_name(primary_of(p["comparison"])), "full FT", "paired t-test",
                       "exact sign-flip"], rows), ""]
    return "\n".join(out).rstrip()


# (lens, where it is read, lower means closer to the base?)
LENSES = (
    ("representation drift (1 − CKA)", "drift", True),
    ("weight update ‖ΔW‖/‖W₀‖", "weights:relative_update", True),
    ("intruder dimensions", "weights:intruders", True),
    ("forgetting (nats/token)", "forgetting:forgetting", True),
    ("probe retention (points)", "probes:retention", False),
)
DESCRIPTIVE_ALPHA = 0.05


def lens_values(data: dict[str, Any], task: str, where: str, label: str | None = None
                ) -> tuple[float, float, float | None] | None:
    """(the LoRA method's mean, full FT's mean, two-sided paired t p over seed pairs) of one lens for
    one task, None where not measured.

    Args:
        label: the LoRA method compared with full FT (default: the primary one).
    """
    if where == "drift":
        d = (data.get("drift") or {}).get(task)
        if not d:
            return None
        label = label or primary_of(d)
        comparison = (d.get("comparisons") or {}).get(label) or (d["comparison"] if label == primary_of(d) else {})
        full = reference_of(d)
        if label not in d["methods"] or full not in d["methods"]:
            return None
        p = (comparison.get("paired_t") or {}).get("p_value")
        return d["methods"][label]["drift"]["mean"], d["methods"][full]["drift"]["mean"], p
    kind, measure = where.split(":")
    lens = (data.get(kind) or {}).get(task)
    if not lens:
        return None
    comparison = lens["comparison"]
    if label is not None and label != primary_of(comparison):
        comparison = (comparison.get("variants") or {}).get(label)
        if comparison is None:
            return None
    m = comparison["measures"][measure]
    if m.get("lora_mean") is None or m.get("full_mean") is None:
        return None
    return m["lora_mean"], m["full_mean"], (m.get("paired_t") or {}).get("p_value")


def lens_verdicts(data: dict[str, Any], task: str, label: str | None = None) -> tuple[list[list[str]], dict[str, str]]:
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


def lenses_summary(data: dict[str, Any]) -> str:
    """Per task, every lens side by side: which method stayed closer to the base, and whether the lenses agree."""
    tasks = sorted(set(data.get("drift") or {}) | set(data.get("weights") or {}) | set(data.get("forgetting") or {})
                   | set(data.get("probes") or {}))
    blocks = []
    for task in tasks:
        rows, verdicts = lens_verdicts(data, task)
        if len(rows) < 2:
            continue
        lora = display_name(primary_of((data.get("drift") or {}).get(task) or {}))
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
