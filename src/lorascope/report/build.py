"""``build_report``: collect artifacts -> figures -> report.md, a self-contained report.html, the
report's tables as CSV files (``tables/*.csv``), interactive figures where plotly is installed, and
summary.json: the study's numbers without per-sample data."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from lorascope.artifacts import commit
from lorascope.bench.record import BenchRow
from lorascope.drift.record import DriftRecord, DriftRun
from lorascope.report.collect import StudyRecords, collect
from lorascope.report.figures import all_figures
from lorascope.report.interactive import interactive_figures
from lorascope.report.markdown import render
from lorascope.report.record import (
    BenchSummary,
    DriftRunSummary,
    DriftSummary,
    FrontierVerdict,
    InteractionVerdict,
    SummaryRecord,
    SummaryRun,
)
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
        summary(data).write(out)
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


def frontier_verdict(d: DriftRecord) -> FrontierVerdict | None:
    """A swept task's frontier verdict: the comparison at matched accuracy, the interaction test and the
    points the verdicts compare (None without a sweep)."""
    frontier = d.frontier
    if not frontier:
        return None
    matched, interaction = frontier.matched, frontier.interaction
    return FrontierVerdict(
        outcome=matched.outcome if matched else None, ratio=matched.ratio if matched else None,
        ci=matched.ci if matched else None, p=matched.p if matched else None,
        overlap=matched.overlap if matched else None, statement=matched.statement if matched else None,
        interaction=InteractionVerdict(test=interaction.test, F=interaction.F, df=interaction.df, p=interaction.p,
                                       n=interaction.n, statement=interaction.statement) if interaction else None,
        compared={method: chosen.label for method, chosen in (d.selection or {}).items()},
        missing=frontier.missing)


# Per layer of a drift run, the numbers summary.json keeps (as one list per measure, aligned with "layer");
# CKA is 1 − drift, left out. ci_low/ci_high: the drift's interval over samples.
_LAYER_KEYS = ("layer", "drift", "drift_debiased", "cosine", "ci_low", "ci_high")


def drift_run_summary(r: DriftRun) -> DriftRunSummary:
    """A drift run without its per-sample data: its means with their intervals over samples, thirds,
    learning record, and per layer each measure as a list (``per_layer[measure][i]`` is layer
    ``per_layer["layer"][i]``'s)."""
    per_layer = {k: [getattr(row, k) for row in r.layers] for k in _LAYER_KEYS
                 if any(k in row.model_fields_set for row in r.layers)}
    return DriftRunSummary(**{k: getattr(r, k) for k in r.model_fields_set if k != "layers"}, per_layer=per_layer)


def drift_summary(d: DriftRecord) -> DriftSummary:
    """One task's drift record without sample ids and between-seed pairs (each ``drift.json`` keeps them)."""
    recorded = d.model_fields_set
    # Each other LoRA variant's comparison with full FT (the primary's is "comparison").
    others = {label: c for label, c in d.comparisons.items() if label != d.primary}
    optional: dict[str, Any] = {"robustness": d.robustness} if d.robustness else {}
    optional |= {"comparisons": others} if others else {}
    optional |= {"frontier": d.frontier, "selection": d.selection} if d.frontier else {}
    return DriftSummary(n_samples=d.n_samples, n_layers=d.n_layers, methods=d.methods,
                        noise_floor=d.noise_floor if "noise_floor" in recorded else None, controls=d.controls,
                        comparison=d.comparison, runs=[drift_run_summary(r) for r in d.runs], skipped_runs=d.skipped_runs,
                        dev_examples_note=d.dev_examples_note if "dev_examples_note" in recorded else None, **optional)


# What the summary keeps of each benchmark row.
_BENCH_KEYS = ("strategy", "batch_size", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "throughput_rps", "ratio_to_merged",
               "ratio_ci_low", "ratio_ci_high", "h2", "load_s", "artifact_bytes", "model_tensor_bytes")


def summary(data: StudyRecords) -> SummaryRecord:
    """The study's numbers in one record: verdicts, per-method drift and metric with their intervals and
    per-layer means, every run's drift with its per-layer values, per-layer tests, noise floor,
    controls, a sweep's frontier and selection, each lens's comparison and runs, serving ratios and
    checks, stage times, provenance. Left out: sample ids, per-matrix weight records and the
    between-seed pairs (each artifact's own JSON keeps them).

    The lenses' and baselines' records write every field (they are not exact-keys records), so their
    parts enter the summary as their whole dumps."""
    bench = data.bench
    return SummaryRecord.create(
        study=data.config.get("name"),
        config=data.config,
        runs=[SummaryRun(task=r.record.task, method=r.label, seed=r.record.seed, status=r.record.status,
                         main_metric=r.record.main_metric, dev=r.record.dev, n_train=r.record.n_train,
                         n_eval=r.record.n_eval, runtime_s=r.record.runtime_s) for r in data.runs],
        baselines={b.task: b.model_dump() for b in data.baselines.baselines},
        sanity=None if data.sanity is None else {"passed": data.sanity.passed,
                                                 "results": [r.model_dump() for r in data.sanity.results]},
        drift={task: drift_summary(d) for task, d in data.drift.items()},
        frontier={task: f for task, d in data.drift.items() if (f := frontier_verdict(d)) is not None},
        weights={task: {"config": w.config, "matrices": len(w.matrices), "comparison": w.comparison.model_dump(),
                        "runs": [r.model_dump(exclude={"per_matrix"}) for r in w.runs]} for task, w in data.weights.items()},
        forgetting={task: f.model_dump(include={"text_source", "n_texts", "base_loss", "controls", "comparison", "runs"})
                    for task, f in data.forgetting.items()},
        probes={task: p.model_dump(include={"probe_tasks", "base", "majority", "uninformative", "controls", "comparison",
                                            "runs"}) for task, p in data.probes.items()},
        bench=None if bench is None else BenchSummary(
            environment=bench.environment, checks_passed=bench.checks_passed,
            results=[BenchRow(**{k: getattr(r, k) for k in _BENCH_KEYS}) for r in bench.results]),
        timings={"total_s": data.timings.total_s, "invocations": data.timings.invocations},
        provenance=data.provenance,
    )


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


