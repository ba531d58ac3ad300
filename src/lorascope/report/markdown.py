"""The report's text: a markdown document built from the collected artifacts."""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.report.reference import REFERENCE, REFERENCE_SERVING


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _ms(stat: dict | None, scale: float = 1.0, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    sd = f" ± {scale * stat['sd']:.{digits}f}" if stat.get("sd") is not None else ""
    return f"{scale * stat['mean']:.{digits}f}{sd}"


def _p(t: dict | None) -> str:
    if not t or t.get("p_value") is None:
        return (t or {}).get("error", "–") if t else "–"
    floor = f"; min attainable {t['min_attainable_p']:.3g}" if t.get("min_attainable_p") else ""
    return f"{t['test']}, n={t['n']}, p={t['p_value']:.4g}{floor}"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")  # a pipe inside a cell must not split the row


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def summary(data: dict[str, Any]) -> str:
    rows, notes = [], set()
    weak = weak_methods(data)
    for task, d in data["drift"].items():
        label = f"{task} †" if task in weak else task
        for key in ("h1a", "h1b"):
            v = d["comparison"].get(key)
            if v and "status" in v:
                t = v["test"]
                # A Fieller interval is unbounded (stored as null) when full FT's drift is not clearly above 0.
                ci = f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]" if v.get("ci_low") is not None else "unbounded"
                status = f"**{v['status']}**"
                rows.append([label, v["hypothesis"], status, f"{v['estimate']:.3f}", f"{ci} ({v['ci_method']})",
                             f"{t['test']}, n={t['n']}", f"{t['p_value']:.4g}",
                             "–" if t.get("min_attainable_p") is None else f"{t['min_attainable_p']:.3g}",
                             f"{v['corrected_alpha']:.4g}"])
                if v["status"] == "underpowered":
                    notes.add(f"underpowered: with n = {t['n']} seed pairs the smallest attainable p "
                              f"({t['min_attainable_p']:.3g}) exceeds the corrected α ({v['corrected_alpha']:.4g}); "
                              "no outcome could be significant, whatever the data.")
            elif v:
                rows.append([label, key.upper(), "not computed", "–", "–", v.get("error", ""), "–", "–", "–"])
    out = ["## Summary", "",
           "H1a: LoRA within ±3 points of full fine-tuning (estimate: mean LoRA − full, as a fraction). "
           "H1b: LoRA drift at least 20% lower (estimate: 1 − mean LoRA drift / mean full drift).", "",
           table(["task", "hypothesis", "verdict", "estimate", "95% interval", "deciding test", "p",
                  "min attainable p", "corrected α"], rows)]
    if weak:
        notes.add(f"† not trained enough to judge: on {', '.join(sorted(weak))} a method did not beat the majority "
                  "baseline by 2 points (see Task performance), so those rows compare barely changed models.")
    out += [""] + [f"- {n}" for n in sorted(notes)]
    h2 = serving_headline(data["bench"])
    if h2:
        out.append(f"- H2 (serving adapters separately adds ≤ 30% latency): {h2}")
    return "\n".join(out)


def performance(data: dict[str, Any]) -> str:
    rows = []
    by = {}
    for r in data["runs"]:
        by.setdefault((r["task"], r["method"]), []).append(r)
    for (task, method), runs in sorted(by.items()):
        ok = sorted((r for r in runs if r["status"] == "ok"), key=lambda r: r["seed"])
        main = ok[0]["main_metric"] if ok else "–"
        vals = np.array([r["dev"][main] for r in ok]) if ok else np.array([])
        per_seed = ", ".join(f"{r['seed']}: {100 * r['dev'][main]:.1f}" for r in ok)
        failed = [f"{r['seed']} ({r.get('reason')})" for r in runs if r["status"] != "ok"]
        base = data["baselines"].get(task, {}).get("majority", {}).get(main)
        ref = REFERENCE.get(task, {}).get(f"metric_{method}")
        mean_sd = f"{100 * vals.mean():.1f} ± {100 * vals.std(ddof=1):.1f}" if vals.size > 1 else (f"{100 * vals[0]:.1f}" if vals.size else "–")
        gap = "–" if base is None or not vals.size else f"{100 * (vals.mean() - base):+.1f}"
        n_dev = ", ".join(str(n) for n in sorted({r["n_eval"] for r in ok if r.get("n_eval")})) or "–"
        rows.append([task, method, main, n_dev, mean_sd, per_seed + (f"; failed: {', '.join(failed)}" if failed else ""),
                     _pct(base), gap, "–" if ref is None else f"{ref:.1f}"])
    return ("## Task performance (dev set)\n\nEach run is scored on the same dev examples (n dev); the majority "
            "baseline predicts the training set's most frequent label on those examples.\n\n" + table(
        ["task", "method", "metric", "n dev", "mean ± sd (%)", "per seed", "majority baseline", "vs majority (points)",
         "reference study*"], rows))


def drift_section(data: dict[str, Any], figures: dict[str, str]) -> str:
    out = ["## Representation drift", ""]
    rows, ctrl_rows = [], []
    for task, d in data["drift"].items():
        ref = REFERENCE.get(task, {})
        for method, s in d["methods"].items():
            floor = (d["noise_floor"] or {}).get(method)
            rows.append([task, method, _ms(s["drift"]), _ms(s["drift_debiased"]), _ms(s["cosine"]),
                         f"{floor['mean_drift']:.4f}" if floor else "–",
                         ", ".join(f"{k} {v:.3f}" for k, v in s["thirds"].items()),
                         ref.get(f"drift_{method}", "–")])
        for c in d["controls"]:
            ctrl_rows.append([task, c["name"], c["expectation"], f"{c['mean_drift']:.2e}", f"{c['mean_drift_debiased']:.3f}",
                              "pass" if c["passed"] else "**FAIL**"])
    out.append(table(["task", "method", "drift (1−CKA)", "debiased drift", "cosine to base", "seed-to-seed drift",
                      "early / middle / late", "reference drift*"], rows))
    out += ["", "Drift is averaged over layers per run, then mean ± sd over seeds. The seed-to-seed drift "
            "(same method, different seeds) is the noise floor. Debiased CKA uses the unbiased HSIC "
            "estimator; it matters when n is not much larger than the hidden size.", ""]
    for key in ("drift_by_layer", "drift_heatmap", "drift_reduction", "metric_vs_drift"):
        if key in figures:
            out.append(f"![{key}]({figures[key]})\n")
    out += ["### LoRA vs full fine-tuning", ""]
    comp_rows = []
    for task, d in data["drift"].items():
        c = d["comparison"]
        red = c.get("reduction_percent")
        boot = c.get("bootstrap_mean_delta") or {}
        comp_rows.append([task, c["n_pairs"], "–" if red is None else f"{red:.1f}%",
                          REFERENCE.get(task, {}).get("reduction", "–"), _p(c.get("paired_t")), _p(c.get("sign_flip")),
                          "–" if c.get("cohens_d") is None else f"{c['cohens_d']:.2f}",
                          f"[{boot['low']:.4f}, {boot['high']:.4f}]" if boot.get("low") is not None else boot.get("error", "–")])
    out.append(table(["task", "seed pairs", "drift reduction Δ%", "reference Δ%*", "paired t-test", "exact sign-flip",
                      "Cohen's d", "bootstrap 95% CI of mean Δdrift"], comp_rows))
    out += ["", "### Pipeline controls", "", table(["task", "control", "expectation", "mean drift", "debiased drift", "result"], ctrl_rows)]
    return "\n".join(out)


def serving_headline(bench: dict | None) -> str | None:
    rows = (bench or {}).get("results") or []
    sep = [r for r in rows if r["strategy"] == "lora_separate" and r["batch_size"] == 1]
    if not sep:
        return None
    r = sep[0]
    return (f"PEFT separate vs merged at batch 1: {r['ratio_to_merged']:.3f}× latency "
            f"(reference study {REFERENCE_SERVING['separate_vs_merged_batch1']:.3f}×).")


def serving_section(bench: dict | None, figures: dict[str, str]) -> str:
    rows = (bench or {}).get("results") or []
    if not rows:
        return "## Serving cost\n\nNo serving benchmark in this study."
    body = [[r["strategy"], r["batch_size"], f"{r['mean_ms']:.2f}", f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}",
             f"{r['p99_ms']:.2f}", f"{r['throughput_rps']:.1f}",
             "–" if r.get("ratio_to_merged") is None else f"{r['ratio_to_merged']:.3f}"] for r in rows]
    device = rows[0].get("device", "?")
    model = (bench.get("config") or {}).get("model", bench.get("model", "?"))
    out = ["## Serving cost", "", f"Device: {device}; model: {model}"
           + (" (synthetic adapters: latency depends on shapes, not values)" if bench.get("synthetic_adapters") else "")
           + ". Latency per request batch; × merged is the ratio to the merged model at the same batch size in the same run.", "",
           table(["strategy", "batch", "mean ms", "p50", "p95", "p99", "requests/s", "× merged"], body)]
    if "serving_ratio" in figures:
        out.append(f"\n![serving_ratio]({figures['serving_ratio']})\n")
    return "\n".join(out)


def limitations(data: dict[str, Any]) -> str:
    cfg = data["config"]
    seeds = len(cfg.get("seeds", []))
    n = next((d["n_samples"] for d in data["drift"].values()), None)
    hw = (data.get("provenance") or {}).get("hardware", {})
    items = [
        f"{seeds} seed(s) per (task, method): an exact paired sign-flip test cannot go below p = {2 ** -seeds:.3g} "
        f"one-sided ({2 ** (1 - seeds):.3g} two-sided), so no per-task seed-level test can reach "
        f"α = 0.05/{len(cfg.get('tasks', []))} (Bonferroni)."
        if seeds else "no seeds recorded",
        f"Drift compares n = {n} dev samples per task; sample-level uncertainty is the bootstrap interval per run.",
        f"Base model: {cfg.get('model')}; training settings: {cfg.get('train')}. Results for other models may differ.",
        f"Hardware: {hw.get('processor', '?')}, {hw.get('cpu_count', '?')} CPUs" + (f", {hw['cuda_device']}" if hw.get("cuda_device") else ", no GPU") + ".",
        "Reference-study columns (marked *) come from TinyLlama-1.1B on an L4 GPU: other model, other data sizes.",
    ]
    for task, why in data.get("drift_skipped", {}).items():
        if task not in data["drift"]:
            items.append(f"No drift analysis for {task}: {why}")
    items += learning_caveats(data)
    failed = [r["folder"] for r in data["runs"] if r["status"] != "ok"]
    if failed:
        items.append(f"Failed units (excluded from the statistics): {', '.join(failed)}.")
    return "## Limitations\n\n" + "\n".join(f"- {i}" for i in items)


def weak_methods(data: dict[str, Any]) -> dict[str, list[str]]:
    """Per task with a drift analysis, the methods whose mean dev metric is not 2 points above majority."""
    out: dict[str, list[str]] = {}
    for task, d in data["drift"].items():
        base = data["baselines"].get(task, {}).get("majority", {})
        main = next((r["main_metric"] for r in data["runs"] if r["task"] == task and r["status"] == "ok"), None)
        for method, s in d["methods"].items():
            metric = (s.get("metric") or {}).get("mean")
            if main and metric is not None and main in base and metric < base[main] + 0.02:
                out.setdefault(task, []).append(method)
    return out


def learning_caveats(data: dict[str, Any]) -> list[str]:
    """Tasks where a method did not beat the majority baseline by 2 points, or where the drift
    difference between methods is smaller than the seed-to-seed noise floor."""
    out = []
    weak_by_task = weak_methods(data)
    for task, d in data["drift"].items():
        weak = weak_by_task.get(task, [])
        if weak:
            out.append(f"{task}: {' and '.join(weak)} did not beat the majority baseline by 2 points; drift of a model "
                       "that learned little says little about how LoRA and full fine-tuning differ.")
        floors = [f["mean_drift"] for f in (d.get("noise_floor") or {}).values() if f]
        ms = d["methods"]
        if floors and {"lora", "full"} <= set(ms):
            diff = abs(ms["full"]["drift"]["mean"] - ms["lora"]["drift"]["mean"])
            if diff < max(floors):
                out.append(f"{task}: the drift difference between methods ({diff:.4f}) is below the seed-to-seed "
                           f"drift ({max(floors):.4f}).")
    return out


def provenance_section(data: dict[str, Any]) -> str:
    prov = data.get("provenance") or {}
    libs = ", ".join(f"{k} {v}" for k, v in (prov.get("libraries") or {}).items() if v)
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in data["timings"].items())
    return "\n".join(["## Provenance", "", f"- lorascope {prov.get('lorascope_version')}, git {prov.get('git_revision')}",
                      f"- {libs}", f"- wall time per stage (last invocation): {timings or '–'}",
                      f"- study folder: `{data['study']}`", "", "```yaml", _yaml(data["config"]), "```"])


def _yaml(cfg: dict) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False).strip()


def render(data: dict[str, Any], figures: dict[str, str]) -> str:
    name = data["config"].get("name", "study")
    parts = [f"# lorascope report: {name}", "",
             f"Base model `{data['config'].get('model')}`; tasks {', '.join(data['config'].get('tasks', []))}; "
             f"methods {', '.join(data['config'].get('methods', []))}; seeds {data['config'].get('seeds')}.", "",
             summary(data), "", performance(data), "", drift_section(data, figures), "",
             serving_section(data["bench"], figures), "", limitations(data), "", provenance_section(data), "",
             "*Reference study: TinyLlama-1.1B on GLUE, L4 GPU (PROTOCOL.md §4); shown for orientation, not as a target."]
    return "\n".join(parts) + "\n"
