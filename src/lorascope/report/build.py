"""``build_report``: collect artifacts -> figures -> report.md, a self-contained report.html and a
small summary.json of the headline numbers."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from lorascope.artifacts import write_json
from lorascope.report.collect import collect
from lorascope.report.figures import all_figures
from lorascope.report.markdown import render

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code,pre{background:#f6f6f6}pre{padding:.8em;overflow:auto}"""


def build_report(study: Path | str) -> Path:
    """Write ``report/report.md``, ``report/report.html`` and ``report/figures/*.png``; returns the HTML path."""
    study = Path(study)
    out = study / "report"
    data = collect(study)
    figures = {k: f"figures/{p.name}" for k, p in all_figures(data, out / "figures").items()}
    md = render(data, figures)
    (out / "report.md").write_text(md, encoding="utf-8")
    html = markdown_to_html(md, out)
    (out / "report.html").write_text(html, encoding="utf-8")
    write_json(out / "summary.json", summary(data))
    return out / "report.html"


def summary(data: dict) -> dict:
    """The study's headline numbers in one small JSON: verdicts, per-method drift and metric with
    their intervals, noise floor, controls, serving ratios and checks, stage times, provenance."""
    drift = {}
    for task, d in data["drift"].items():
        comparison = {k: v for k, v in d["comparison"].items() if k != "per_layer"}
        methods = {m: {k: v for k, v in s.items() if not k.startswith("layer_")} for m, s in d["methods"].items()}
        drift[task] = {"n_samples": d["n_samples"], "n_layers": d.get("n_layers"), "methods": methods,
                       "noise_floor": d.get("noise_floor"), "controls": d["controls"], "comparison": comparison}
    bench = data["bench"] or {}
    keep = ("strategy", "batch_size", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "throughput_rps", "ratio_to_merged",
            "ratio_ci_low", "ratio_ci_high", "h2_at_most_30pct", "load_s", "artifact_bytes", "model_tensor_bytes")
    return {
        "study": data["config"].get("name"),
        "config": data["config"],
        "runs": [{k: r.get(k) for k in ("task", "method", "seed", "status", "main_metric", "dev", "n_train", "n_eval",
                                         "runtime_s")} for r in data["runs"]],
        "baselines": data["baselines"],
        "drift": drift,
        "bench": {"environment": bench.get("environment"), "checks_passed": bench.get("checks_passed"),
                  "results": [{k: r.get(k) for k in keep} for r in bench.get("results") or []]} if bench else None,
        "timings": data["timings"],
        "provenance": data.get("provenance"),
    }


def markdown_to_html(md: str, base: Path) -> str:
    """The small markdown subset the report uses -> HTML with images inlined as base64.

    A dedicated converter for exactly the constructs ``markdown.py`` emits (headings, tables with
    escaped pipes, lists, images, code blocks): one tested rendering, no optional dependency.
    """
    body = _simple_markdown(md)

    def inline(m: re.Match) -> str:
        path = base / m.group(2)
        data = base64.b64encode(path.read_bytes()).decode() if path.is_file() else ""
        return f'<img alt="{m.group(1)}" src="data:image/png;base64,{data}">'

    body = re.sub(r'<img alt="([^"]*)" src="([^"]+)"\s*/?>', inline, body)
    return f"<!doctype html><html><head><meta charset='utf-8'><title>lorascope report</title><style>{_CSS}</style></head><body>{body}</body></html>"


def _simple_markdown(md: str) -> str:
    import html as h

    out, in_table, in_code, in_list = [], False, False, False
    for line in md.splitlines():
        if line.startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(h.escape(line))
            continue
        if in_list and not line.startswith("- "):
            out.append("</ul>")
            in_list = False
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            if all(set(c) <= {"-"} for c in cells):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif line.startswith("!["):
            m = re.match(r"!\[([^\]]*)\]\(([^)]+)\)", line)
            if m:
                out.append(f'<img alt="{m.group(1)}" src="{m.group(2)}">')
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    if in_table:
        out.append("</table>")
    if in_list:
        out.append("</ul>")
    return "\n".join(out)


def _inline(text: str) -> str:
    import html as h

    text = h.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
