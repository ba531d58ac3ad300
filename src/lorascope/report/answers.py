"""The report's opening: RQ1 and RQ2 answered in plain words from the verdicts, then the verdict
table. Every sentence is computed from the saved numbers; its strength says which tests agree."""

from __future__ import annotations

from typing import Any

from lorascope.report.limitations import weak_methods
from lorascope.report.serving_text import aa_noise, h2_max_ratio, h2_of, h2_rows, merged_ratio_row
from lorascope.report.text import interval, p_value, reduction_interval, short_test, table
from lorascope.stats.power import seeds_needed_text
from lorascope.variants import display_name, primary_of

# Null hypothesis of each verdict's one-sided test, in words (the claim is its negation).
NULLS = {
    "H1a": "mean LoRA − full metric ≤ −margin",
    "H1b": "mean LoRA drift ≥ (1 − min reduction) · mean full drift",
    "H1b (debiased)": "the same on debiased drift",
    "LoRA drifts less": "mean LoRA drift ≥ mean full drift",
    "LoRA drifts less (debiased)": "the same on debiased drift",
}


def deciding_p(v: dict[str, Any], which: str = "primary") -> str:
    """The p a status rests on: the claim's p, or for "rejected" the opposite claim's p."""
    primary = which == "primary"
    status = v["status"] if primary else v.get("secondary_status")
    if status == "rejected":
        reverse = v.get("reverse_p_value") if primary else v.get("secondary_reverse_p_value")
        return f"p = {p_value(reverse)} for the opposite claim"
    return f"p = {p_value(v['p_value'] if primary else (v.get('secondary') or {}).get('p_value'))}"


def strength(v: dict[str, Any]) -> str:
    """How firmly a verdict stands, in words."""
    first, second = short_test(v["test"]), short_test(v.get("secondary"))
    if v.get("decisive"):
        return f"{v['status']} by both the {first} ({deciding_p(v)}) and the {second} ({deciding_p(v, 'secondary')})"
    if not v.get("tests_agree", True):
        other = v.get("secondary") or {}
        why = (f"cannot reach α with n = {other.get('n')} (its smallest p is {other['min_attainable_p']:.3g})"
               if v["secondary_status"] == "underpowered" and other.get("min_attainable_p") else
               f"says {v['secondary_status']} ({deciding_p(v, 'secondary')})")
        return f"{v['status']} by the {first} ({deciding_p(v)}), but the {second} {why} — not confirmed"
    return f"{v['status']} ({first} {deciding_p(v)}; not decided)"


def _estimate_text(v: dict[str, Any]) -> str:
    if v["hypothesis"] == "H1a":
        return f"LoRA − full = {100 * v['estimate']:+.1f} points"
    return f"reduction {100 * v['estimate']:.1f}%"


def rq1_sentences(data: dict[str, Any]) -> list[str]:
    """One bullet per task with the measured reduction, then one per verdict with its strength."""
    weak = weak_methods(data)
    out = []
    for task, d in data["drift"].items():
        c, ms, lora = d["comparison"], d["methods"], primary_of(d)
        verdicts = c.get("verdicts") or {}
        if not {lora, "full"} <= set(ms) or c.get("reduction_percent") is None:
            out.append(f"**{task}**: no paired comparison ({c.get('note', 'one method missing')}).")
            continue
        if c.get("not_interpretable"):
            out.append(f"**{task}** (n = {c['n_pairs']} seed pairs): no answer, {c['not_interpretable']}.")
            continue
        hier = c.get("reduction_ci_seeds_samples") or {}
        ci = (f"; 95% interval over seeds and samples {reduction_interval(hier['low'], hier['high'])}"
              if hier.get("low") is not None else "")
        label = f"{task} †" if task in weak else task
        reduction = c["reduction_percent"]
        direction = f"{reduction:.1f}% less" if reduction >= 0 else f"{-reduction:.1f}% more"
        out.append(f"**{label}** (n = {c['n_pairs']} seed pairs): {display_name(lora)}'s representations drifted "
                   f"{direction} than full fine-tuning's (mean drift {ms[lora]['drift']['mean']:.3f} "
                   f"vs {ms['full']['drift']['mean']:.3f}{ci}).")
        if c.get("runs_not_learned"):
            out.append(f"{label}: runs at majority level, included above: {', '.join(c['runs_not_learned'])}.")
        for key in ("lower", "h1b", "h1a"):
            v = verdicts.get(key)
            if v and "status" in v:
                out.append(f"{label} — {v['hypothesis']}: {v['claim']} ({_estimate_text(v)}): {strength(v)}.")
    return out


def rq2_sentence(bench: dict[str, Any] | None) -> str | None:
    sep = merged_ratio_row(bench, "lora_separate", 1)
    if sep is None:
        return None
    text = (f"Serving a LoRA adapter unmerged through PEFT costs {sep['ratio_to_merged']:.3f}× the merged model's mean "
            f"latency at batch 1 (95% CI {interval(sep['ratio_ci_low'], sep['ratio_ci_high'])}).")
    rows = h2_rows(bench)
    by_verdict: dict[str, list[str]] = {}
    for r in rows:
        by_verdict.setdefault(h2_of(r) or "–", []).append(f"{r['strategy']} (batch {r['batch_size']})")
    verdicts = "; ".join(f"{k} for {', '.join(v)}" for k, v in by_verdict.items())
    text += f" H2 (at most {100 * (h2_max_ratio(bench) - 1):.0f}% added latency): {verdicts}."
    rt = merged_ratio_row(bench, "runtime_single", 1)
    if rt is not None:
        text += (f" lorascope's runtime serves the same adapter at {rt['ratio_to_merged']:.3f}× "
                 f"({interval(rt['ratio_ci_low'], rt['ratio_ci_high'])}).")
    noise = aa_noise(bench)
    if noise:
        text += f" {noise}"
    return text


def answers(data: dict[str, Any]) -> str:
    out = ["## Answers", ""]
    rq1 = rq1_sentences(data)
    out.append("**RQ1 — does LoRA keep representations closer to the base than full fine-tuning?**")
    out += [""] + [f"- {s}" for s in rq1] if rq1 else ["", "No drift analysis in this study."]
    rq2 = rq2_sentence(data["bench"])
    out += ["", "**RQ2 — what does serving adapters separately cost?**", "", f"- {rq2}" if rq2 else "- No serving benchmark."]
    return "\n".join(out)


def verdict_table(data: dict[str, Any]) -> str:
    weak = weak_methods(data)
    rows, nulls = [], {}
    for task, d in data["drift"].items():
        label = f"{task} †" if task in weak else task
        for v in (d["comparison"].get("verdicts") or {}).values():
            if "status" not in v:
                status = "**not interpretable**" if v.get("not_interpretable") else "not computed"
                rows.append([label, "–", status, v.get("error", ""), "–", "–", "–", "–", "–"])
                continue
            nulls[v["hypothesis"]] = NULLS.get(v["hypothesis"], "")
            second = v.get("secondary") or {}
            floor = second.get("min_attainable_p")
            exact = f"{v['secondary_status']}, {deciding_p(v, 'secondary')}" + (f" (min {floor:.3g})" if floor else "")
            # H1a in metric points, the others in percent: both are fractions × 100.
            ci = interval(*(None if x is None else 100 * x for x in (v["ci_low"], v["ci_high"])), 1)
            rows.append([label, v["hypothesis"], f"**{v['status']}**" + ("" if v.get("tests_agree", True) else " ⚠"),
                         f"{_estimate_text(v)}, 95% CI {ci} ({v['ci_method']}, over seeds)",
                         f"{short_test(v['test'])}: {deciding_p(v)}", exact,
                         f"{v['corrected_alpha']:.4g}", "yes" if v.get("decisive") else "no",
                         seeds_needed_text(v.get("seeds_needed"))])
    if not rows:
        return ""
    out = ["## Verdicts", "",
           "Each verdict is decided by the primary test at the corrected α; the exact sign-flip test of the same "
           "one-sided null is shown beside it, and ⚠ marks a verdict the two tests disagree on. 'Decisive' means both "
           "reach the same decision. Intervals are over seeds (Student t; Fieller for reductions). 'Seeds for 80% "
           "power' plans a next study from the observed per-seed spread.", "",
           table(["task", "hypothesis", "verdict (primary)", "estimate", "primary test", "exact sign-flip",
                  "corrected α", "decisive", "seeds for 80% power"], rows), ""]
    out += [f"- {h}: null hypothesis \"{n}\" (one-sided; rejecting it supports the claim)." for h, n in nulls.items()]
    if weak:
        out.append("- † a method did not beat the majority baseline by 2 points on this task (see Task performance): "
                   "those rows compare barely changed models.")
    return "\n".join(out)
