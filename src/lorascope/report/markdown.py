"""The report's text: a markdown document built from the collected artifacts, section by section."""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.report.answers import answers, verdict_table
from lorascope.report.drift_text import drift_section
from lorascope.report.lenses_text import forgetting_section, lenses_summary, probes_section, weights_section
from lorascope.report.limitations import limitations
from lorascope.report.reference import REFERENCE
from lorascope.report.serving_text import serving_section
from lorascope.report.text import pct, table
from lorascope.report.variants_text import variants_section


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
                     pct(base), gap, "–" if ref is None else f"{ref:.1f}"])
    return ("## Task performance (dev set)\n\nEach run is scored on the same dev examples (n dev); the majority "
            "baseline predicts the training set's most frequent label on those examples.\n\n" + table(
        ["task", "method", "metric", "n dev", "mean ± sd (%)", "per seed", "majority baseline", "vs majority (points)",
         "reference study*"], rows))


def provenance_section(data: dict[str, Any]) -> str:
    prov = data.get("provenance") or {}
    libs = ", ".join(f"{k} {v}" for k, v in (prov.get("libraries") or {}).items() if v)
    stored = data["timings"]
    totals = stored.get("total_s", stored)  # older studies stored {stage: seconds} of the last invocation
    runs = len(stored.get("invocations", [])) or 1
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in totals.items())
    return "\n".join(["## Provenance", "", f"- lorascope {prov.get('lorascope_version')}, git {prov.get('git_revision')}",
                      f"- {libs}", f"- wall time per stage, summed over {runs} invocation(s): {timings or '–'}",
                      f"- study folder: `{data['study']}`", "", "```yaml", _yaml(data["config"]), "```"])


def _yaml(cfg: dict) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False).strip()


def _present(*sections: str) -> list[str]:
    """The sections a study has (a lens it did not run renders as ""), each followed by a blank line."""
    return [line for section in sections if section for line in (section, "")]


def render(data: dict[str, Any], figures: dict[str, str]) -> str:
    name = data["config"].get("name", "study")
    parts = [f"# lorascope report: {name}", "",
             f"Base model `{data['config'].get('model')}`; tasks {', '.join(data['config'].get('tasks', []))}; "
             f"methods {', '.join(data['config'].get('methods', []))}; seeds {data['config'].get('seeds')}.", "",
             answers(data), "", verdict_table(data), "", performance(data), "", drift_section(data, figures), "",
             *_present(lenses_summary(data), variants_section(data, figures), weights_section(data.get("weights") or {}),
                       forgetting_section(data.get("forgetting") or {}), probes_section(data.get("probes") or {})),
             serving_section(data["bench"], figures), "", limitations(data), "", provenance_section(data), "",
             "*Reference study: TinyLlama-1.1B on GLUE, L4 GPU (PROTOCOL.md §4); shown for orientation, not as a target."]
    return "\n".join(parts) + "\n"
