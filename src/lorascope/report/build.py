"""``build_report``: collect artifacts -> figures -> report.md, a self-contained report.html and a
small summary.json of the headline numbers."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from lorascope.artifacts import write_json
from lorascope.report.collect import collect
from lorascope.report.figures import all_figures
from lorascope.report.markdown import render
from lorascope.study.layout import StudyLayout

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code,pre{background:#f6f6f6}pre{padding:.8em;overflow:auto}"""


def build_report(study: Path | str) -> Path:
    """Write ``report/report.md``, ``report/report.html`` and ``report/figures/*.png``; returns the HTML path."""
    study = Path(study)
    out = StudyLayout(Path(study)).report
    data = collect(study)
    figures = {k: f"figures/{p.name}" for k, p in all_figures(data, out / "figures").items()}
    md = render(data, figures)
    (out / "report.md").write_text(md, encoding="utf-8")
    html = markdown_to_html(md, out)
    (out / "report.html").write_text(html, encoding="utf-8")
    write_json(out / "summary.json", summary(data))
    return out / "report.html"


def frontier_verdict(d: dict[str, Any]) -> dict[str, Any] | None:
    """A swept task's frontier verdict: the comparison at matched accuracy, the interaction test and the
    points the verdicts compare (None without a sweep)."""
    frontier = d.get("frontier")
    if not frontier:
        return None
    matched, interaction = frontier.get("matched") or {}, frontier.get("interaction") or {}
    return {
        "outcome": matched.get("outcome"), "ratio": matched.get("ratio"), "ci": matched.get("ci"), "p": matched.get("p"),
        "overlap": matched.get("overlap"), "statement": matched.get("statement"),
        "interaction": {k: interaction.get(k) for k in ("test", "F", "df", "p", "n", "statement")} if interaction else None,
        "compared": {method: chosen.get("label") for method, chosen in (d.get("selection") or {}).items()
                     if isinstance(chosen, dict)},
        "missing": frontier.get("missing") or [],
    }


def summary(data: dict) -> dict:
    """The study's headline numbers in one small JSON: verdicts, per-method drift and metric with
    their intervals, noise floor, controls, a sweep's frontier and selection, serving ratios and
    checks, stage times, provenance."""
    drift = {}
    for task, d in data["drift"].items():
        comparison = {k: v for k, v in d["comparison"].items() if k != "per_layer"}
        methods = {m: {k: v for k, v in s.items() if not k.startswith("layer_")} for m, s in d["methods"].items()}
        drift[task] = {"n_samples": d["n_samples"], "n_layers": d.get("n_layers"), "methods": methods,
                       "noise_floor": d.get("noise_floor"), "controls": d["controls"], "comparison": comparison,
                       "dev_examples_note": d.get("dev_examples_note")}
        if d.get("frontier"):
            drift[task].update(frontier=d["frontier"], selection=d.get("selection"))
    bench = data["bench"] or {}
    keep = ("strategy", "batch_size", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "throughput_rps", "ratio_to_merged",
            "ratio_ci_low", "ratio_ci_high", "h2", "load_s", "artifact_bytes", "model_tensor_bytes")
    return {
        "study": data["config"].get("name"),
        "config": data["config"],
        "runs": [{k: r.get(k) for k in ("task", "method", "seed", "status", "main_metric", "dev", "n_train", "n_eval",
                                         "runtime_s")} for r in data["runs"]],
        "baselines": data["baselines"],
        "drift": drift,
        "frontier": {task: f for task, d in data["drift"].items() if (f := frontier_verdict(d)) is not None},
        "weights": {task: {"config": w["config"], "matrices": len(w["matrices"]), "comparison": w["comparison"]}
                    for task, w in (data.get("weights") or {}).items()},
        "forgetting": {task: {k: f[k] for k in ("text_source", "n_texts", "base_loss", "controls", "comparison")}
                       for task, f in (data.get("forgetting") or {}).items()},
        "probes": {task: {k: p[k] for k in ("probe_tasks", "base", "majority", "uninformative", "controls", "comparison")}
                   for task, p in (data.get("probes") or {}).items()},
        "bench": {"environment": bench.get("environment"), "checks_passed": bench.get("checks_passed"),
                  "results": [{k: r.get(k) for k in keep} for r in bench.get("results") or []]} if bench else None,
        "timings": data["timings"],
        "provenance": data.get("provenance"),
    }


def markdown_to_html(md: str, base: Path) -> str:
    """The report's markdown -> one self-contained HTML page (Python-Markdown; images inlined as base64)."""
    import markdown

    body = markdown.markdown(md, extensions=["tables", "fenced_code"], output_format="html")

    def inline(m: re.Match) -> str:
        path = base / m.group(2)
        data = base64.b64encode(path.read_bytes()).decode() if path.is_file() else ""
        return f'<img alt="{m.group(1)}" src="data:image/png;base64,{data}">'

    body = re.sub(r'<img alt="([^"]*)" src="([^"]+)"\s*/?>', inline, body)
    return f"<!doctype html><html><head><meta charset='utf-8'><title>lorascope report</title><style>{_CSS}</style></head><body>{body}</body></html>"


