"""``build_report``: collect artifacts -> figures -> report.md, a self-contained report.html, the
report's tables as CSV files (``tables/*.csv``), interactive figures where plotly is installed, and
summary.json: the study's numbers without per-sample data."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from lorascope.artifacts import commit
from lorascope.report.collect import StudyRecords, collect
from lorascope.report.figures import all_figures
from lorascope.report.interactive import interactive_figures
from lorascope.report.markdown import render
from lorascope.report.record import SummaryRecord
from lorascope.report.tables import write_tables
from lorascope.study.layout import StudyLayout

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code,pre{background:#f6f6f6}pre{padding:.8em;overflow:auto}"""


def build_report(study: Path | str) -> Path:
    """Write ``report/report.md``, ``report/report.html``, ``report/figures/*.png`` (and ``*.html`` with the
    plots extra), ``report/tables/*.csv`` and ``report/summary.json``; returns the HTML path."""
    study = Path(study)
    final = StudyLayout(Path(study)).report
    data = collect(study)
    # A report is a function of the study's artifacts alone: rebuilt, it replaces the last one.
    with commit(final, {"report_of": "the study folder above"}) as out:
        figures = {k: f"figures/{p.name}" for k, p in all_figures(data, out / "figures").items()}
        md = render(data, figures)
        interactive = {k: f"figures/{p.name}" for k, p in interactive_figures(data, out / "figures").items()}
        md = link_interactive(md, figures, interactive)
        (out / "report.md").write_text(md, encoding="utf-8")
        write_tables(data, out / "tables")
        html = markdown_to_html(md, out)
        (out / "report.html").write_text(html, encoding="utf-8")
        SummaryRecord.create(**summary(data)).write(out)
    return final / "report.html"


# What hovering adds to each interactive figure, as the link under its static version says.
_INTERACTIVE_TEXT = {"drift_by_layer": "each seed's drift at each layer", "frontier": "each seed behind each sweep point"}


def link_interactive(md: str, figures: dict[str, str], interactive: dict[str, str]) -> str:
    """``md`` with a link to each interactive figure on the line after its static image (the markdown
    sections place the images; a figure without its static image in the text gets no link)."""
    for name, path in interactive.items():
        image = f"![{name}]({figures.get(name)})"
        if name in figures and image in md:
            link = f"[Interactive version ({_INTERACTIVE_TEXT.get(name, 'values')} on hover)]({path})"
            md = md.replace(image, f"{image}\n\n{link}", 1)
    return md


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


# Per layer of a drift run, the numbers summary.json keeps (as one list per measure, aligned with "layer");
# CKA is 1 − drift, left out. ci_low/ci_high: the drift's interval over samples.
_LAYER_KEYS = ("layer", "drift", "drift_debiased", "cosine", "ci_low", "ci_high")
# Of a lens's run, what summary.json leaves out: per-matrix records (singular values and similarities of
# every adapted matrix), which the lens's own JSON keeps.
_LENS_RUN_DROP = ("per_matrix",)


def drift_run_summary(r: dict[str, Any]) -> dict[str, Any]:
    """A drift run without its per-sample data: its means with their intervals over samples, thirds,
    learning record, and per layer each measure as a list (``per_layer[measure][i]`` is layer
    ``per_layer["layer"][i]``'s)."""
    layers = r.get("layers") or []
    per_layer = {k: [row.get(k) for row in layers] for k in _LAYER_KEYS if any(k in row for row in layers)}
    return {**{k: v for k, v in r.items() if k != "layers"}, "per_layer": per_layer}


def lens_runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A lens's runs with their summaries, without per-matrix records."""
    return [{k: v for k, v in r.items() if k not in _LENS_RUN_DROP} for r in result.get("runs") or []]


def summary(data: StudyRecords) -> dict[str, Any]:
    """The study's numbers in one JSON: verdicts, per-method drift and metric with their intervals and
    per-layer means, every run's drift with its per-layer values, per-layer tests, noise floor,
    controls, a sweep's frontier and selection, each lens's comparison and runs, serving ratios and
    checks, stage times, provenance. Left out: sample ids, per-matrix weight records and the
    between-seed pairs (each artifact's own JSON keeps them)."""
    drift = {}
    for task, d in data["drift"].items():
        drift[task] = {"n_samples": d["n_samples"], "n_layers": d.get("n_layers"), "methods": d["methods"],
                       "noise_floor": d.get("noise_floor"), "controls": d["controls"], "comparison": d["comparison"],
                       "runs": [drift_run_summary(r) for r in d.get("runs") or []],
                       "skipped_runs": d.get("skipped_runs") or [],
                       "dev_examples_note": d.get("dev_examples_note")}
        if d.get("robustness"):
            drift[task]["robustness"] = d["robustness"]
        # Each other LoRA variant's comparison with full FT (the primary's is "comparison" above).
        others = {label: c for label, c in (d.get("comparisons") or {}).items() if label != d.get("primary")}
        if others:
            drift[task]["comparisons"] = others
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
        "baselines": {b.task: b.model_dump() for b in data["baselines"].baselines},
        "sanity": None if data.get("sanity") is None else {"passed": data["sanity"].passed,
                                                            "results": [r.model_dump() for r in data["sanity"].results]},
        "drift": drift,
        "frontier": {task: f for task, d in data["drift"].items() if (f := frontier_verdict(d)) is not None},
        "weights": {task: {"config": w["config"], "matrices": len(w["matrices"]), "comparison": w["comparison"],
                           "runs": lens_runs(w)}
                    for task, w in (data.get("weights") or {}).items()},
        "forgetting": {task: {**{k: f[k] for k in ("text_source", "n_texts", "base_loss", "controls", "comparison")},
                              "runs": lens_runs(f)}
                       for task, f in (data.get("forgetting") or {}).items()},
        "probes": {task: {**{k: p[k] for k in ("probe_tasks", "base", "majority", "uninformative", "controls", "comparison")},
                          "runs": lens_runs(p)}
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

    def inline(m: re.Match[str]) -> str:
        path = base / m.group(2)
        data = base64.b64encode(path.read_bytes()).decode() if path.is_file() else ""
        return f'<img alt="{m.group(1)}" src="data:image/png;base64,{data}">'

    body = re.sub(r'<img alt="([^"]*)" src="([^"]+)"\s*/?>', inline, body)
    return f"<!doctype html><html><head><meta charset='utf-8'><title>lorascope report</title><style>{_CSS}</style></head><body>{body}</body></html>"


