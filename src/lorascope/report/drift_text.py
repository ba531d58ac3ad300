"""The representation-drift section (RQ1): per-method drift with intervals over seeds and over
seeds and samples, the noise floor, the two-sided method comparison, per-run sample intervals,
per-layer tests and the pipeline controls."""

from __future__ import annotations

from typing import Any

from lorascope.report.limitations import spread_text
from lorascope.report.reference import REFERENCE
from lorascope.report.text import interval, num, reduction_interval, seed_sorted, table, test_result


def _mean_sd(stat: dict | None, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    sd = f" ± {stat['sd']:.{digits}f}" if stat.get("sd") is not None else ""
    return f"{stat['mean']:.{digits}f}{sd}"


def _ci(stat: dict | None, key: str) -> str:
    bounds = (stat or {}).get(key)
    return interval(*bounds) if bounds else "–"


def method_table(data: dict[str, Any]) -> str:
    rows = []
    for task, d in data["drift"].items():
        ref = REFERENCE.get(task, {})
        for method, s in d["methods"].items():
            rows.append([task, method, _mean_sd(s["drift"]), _ci(s["drift"], "ci_seeds"), _ci(s["drift"], "ci_seeds_samples"),
                         _mean_sd(s["drift_debiased"]), _ci(s["drift_debiased"], "ci_seeds_samples"), _mean_sd(s["cosine"]),
                         spread_text((d.get("noise_floor") or {}).get(method)),
                         ", ".join(f"{k} {v:.3f}" for k, v in s["thirds"].items()), ref.get(f"drift_{method}", "–")])
    return table(["task", "method", "drift (1−CKA), mean ± sd", "95% CI over seeds", "95% CI over seeds + samples",
                  "debiased drift", "95% CI over seeds + samples", "cosine to base", "noise floor: sd over seeds [95% CI]",
                  "early / middle / late", "reference drift*"], rows)


def comparison_table(data: dict[str, Any]) -> str:
    rows = []
    for task, d in data["drift"].items():
        c = d["comparison"]
        red = c.get("reduction_percent")
        lower = (c.get("verdicts") or {}).get("lower") or {}
        fieller = (reduction_interval(*(None if x is None else 100 * x for x in (lower.get("ci_low"), lower.get("ci_high"))))
                   if "ci_low" in lower else "–")
        hier, hier_db = c.get("reduction_ci_seeds_samples") or {}, c.get("reduction_ci_seeds_samples_debiased") or {}
        delta = c.get("mean_delta_ci_t") or {}
        rows.append([task, c["n_pairs"], "–" if red is None else f"{red:.1f}%", fieller,
                     reduction_interval(hier.get("low"), hier.get("high")),
                     "–" if c.get("reduction_percent_debiased") is None else
                     f"{c['reduction_percent_debiased']:.1f}% {reduction_interval(hier_db.get('low'), hier_db.get('high'))}",
                     REFERENCE.get(task, {}).get("reduction", "–"), test_result(c.get("paired_t")),
                     test_result(c.get("sign_flip")), num(c.get("cohens_d"), 2),
                     interval(delta.get("low"), delta.get("high"), 4)])
    return table(["task", "seed pairs", "drift reduction Δ%", "95% CI over seeds (Fieller)",
                  "95% CI over seeds + samples", "Δ% debiased [seeds + samples]", "reference Δ%*",
                  "paired t-test (two-sided)", "exact sign-flip (two-sided)", "Cohen's d", "95% t CI of mean Δdrift"], rows)


def per_run_table(data: dict[str, Any]) -> str:
    rows = []
    for task, d in data["drift"].items():
        for r in seed_sorted(d["runs"]):
            rows.append([task, r["method"], r["seed"], "–" if r.get("metric") is None else f"{100 * r['metric']:.1f}",
                         f"{r['mean_drift']:.4f} {interval(*r['mean_drift_ci'], 4)}",
                         f"{r['mean_drift_debiased']:.4f} {interval(*r['mean_drift_debiased_ci'], 4)}",
                         num(r.get("mean_cosine"), 4)])
    return table(["task", "method", "seed", "dev metric (%)", "drift [95% CI over samples]",
                  "debiased drift [95% CI over samples]", "cosine"], rows)


def per_layer_text(data: dict[str, Any]) -> list[str]:
    out = []
    for task, d in data["drift"].items():
        layers = ((d["comparison"].get("per_layer") or {}).get("layers")) or []
        if not layers or "reject_holm" not in layers[0]:
            continue
        hits = [str(row["layer"]) for row in layers if row.get("reject_holm")]
        alpha = d["comparison"]["per_layer"].get("alpha", 0.05)  # drift.json files before it was recorded used 0.05
        out.append(f"- {task}: layers where full − LoRA drift differs (paired t-test per layer, two-sided, Holm over "
                   f"{len(layers)} layers at α = {alpha:g}): {', '.join(hits) if hits else 'none'}.")
    return out


def controls_table(data: dict[str, Any]) -> str:
    rows = [[task, c["name"], c["expectation"], f"{c['max_drift']:.2e}", f"{c['mean_drift_debiased']:.3f}",
             "pass" if c["passed"] else "**FAIL**"] for task, d in data["drift"].items() for c in d["controls"]]
    return table(["task", "control", "expectation", "max drift over layers", "debiased drift", "result"], rows)


def drift_section(data: dict[str, Any], figures: dict[str, str]) -> str:
    settings = data["config"].get("drift") or {}
    pooled = {"mean": "mean-pooled", "head_token": "head-token"}.get(settings.get("pooling", "mean"), "pooled")
    min_reduction = float(settings.get("min_reduction", 0.2))
    out = ["## Representation drift", "",
           f"Drift = 1 − linear CKA between the base's and the fine-tuned model's {pooled} hidden states on the same "
           "dev samples, averaged over layers per run; debiased CKA uses the unbiased HSIC estimator (it matters when n "
           "is not much larger than the hidden size). The noise floor is the sd over seeds of one method's drift from "
           "the base (chi-square interval). Intervals: *over seeds* resamples nothing (Student t on per-seed values); "
           "*over seeds + samples* is the hierarchical bootstrap (seeds, then the shared dev samples).", "",
           method_table(data), ""]
    for key in ("drift_by_layer", "drift_heatmap", "drift_reduction", "metric_vs_drift"):
        if key in figures:
            out.append(f"![{key}]({figures[key]})\n")
    out += ["### LoRA vs full fine-tuning", "",
            "The two tests in this table share the two-sided null \"the mean per-seed drift difference full − LoRA is 0\"; "
            f"the verdicts above test one-sided claims (e.g. \"LoRA drifts at least {min_reduction:.0%} less\"), so their "
            "p-values differ "
            "by design.", "", comparison_table(data), ""]
    out += per_layer_text(data)
    out += ["", "### Each run, with its interval over samples", "", per_run_table(data), "",
            "### Pipeline controls", "",
            "base vs base is a second, independent extraction of the base (another sample order and batch size) "
            "re-aligned by sample id; the shuffled control is the same extraction left in its shuffled order.", "",
            controls_table(data)]
    return "\n".join(out)
