"""The lenses besides representations: the weight lens (update size, rank, intruder dimensions) and forgetting."""

from __future__ import annotations

from typing import Any

from lorascope.report.text import table, test_result

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


def weights_section(weights: dict[str, dict[str, Any]]) -> str:
    """One table per task (mean ± sd over seeds per method, and the full − LoRA tests over seed pairs)."""
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
                         test_result(entry.get("paired_t")), test_result(entry.get("sign_flip"))])
        out += [f"**{task}**", "", table(["measure", "LoRA", "full FT", "paired t-test", "exact sign-flip"], rows), ""]
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


def forgetting_section(forgetting: dict[str, dict[str, Any]]) -> str:
    """Per task: the base's held-out loss, each method's forgetting (mean ± sd over seeds) and the tests."""
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
                         test_result(entry.get("paired_t")), test_result(entry.get("sign_flip"))])
        out += [f"**{task}** (base loss {f['base_loss']:.4f}, perplexity {f['base_perplexity']:.2f})", "",
                table(["measure", "LoRA", "full FT", "paired t-test", "exact sign-flip"], rows), ""]
    return "\n".join(out).rstrip()


def probes_section(probes: dict[str, dict[str, Any]]) -> str:
    """Per task: the base's probe accuracy on each other task, each method's retention and the tests."""
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
                         test_result(entry.get("paired_t")), test_result(entry.get("sign_flip"))])
        out += [f"**{task}** — base probe accuracy: {base}", ""]
        if p["uninformative"]:
            out += [f"The base's probe does not beat the majority label on {', '.join(p['uninformative'])}: "
                    "retention there says nothing.", ""]
        out += [table(["probe task", "LoRA", "full FT", "paired t-test", "exact sign-flip"], rows), ""]
    return "\n".join(out).rstrip()
