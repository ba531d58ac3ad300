"""Interactive versions of the figures where hovering shows what a static one cannot: each seed's
value at each layer (drift by layer), each seed's point behind a sweep point (the frontier).

Plotly (the ``plots`` extra), written as self-contained HTML files with plotly's JavaScript embedded:
nothing is fetched when a file is opened. Without plotly nothing is written, and the report links
only the files that exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lorascope.drift.record import DriftRecord
from lorascope.extras import missing_modules
from lorascope.report.collect import StudyRecords
from lorascope.report.figures import COLOURS

FILES = {"drift_by_layer": "drift_by_layer.html", "frontier": "frontier.html"}


def colours(labels: Iterable[str]) -> dict[str, str]:
    """LoRA blue and full red as in the static figures; every other label its own colour of plotly's
    24-colour palette (a sweep has more labels than the static figures' palette holds)."""
    from plotly.colors import qualitative

    from lorascope.variants import natural_key

    others = sorted({label for label in labels if label not in COLOURS}, key=natural_key)
    return {**COLOURS, **{label: qualitative.Dark24[i % len(qualitative.Dark24)] for i, label in enumerate(others)}}


def drift_by_layer_figure(drift: dict[str, DriftRecord]) -> Any:
    """One panel per task: per method the mean over seeds (hover: mean, sd, n) and every seed's
    curve (hover: drift, debiased drift, the interval over samples, CKA, cosine), a seed's curve
    shown or hidden with its method's legend entry."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tasks = [t for t, d in drift.items() if d.runs]
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=[f"{t}: drift from base by layer" for t in tasks])
    for col, task in enumerate(tasks, 1):
        runs = drift[task].runs
        palette = colours(r.method for r in runs)
        for method in sorted({r.method for r in runs}):
            own = sorted((r for r in runs if r.method == method), key=lambda r: r.seed)
            group, first = f"{task}/{method}", col == 1
            for r in own:
                layers = r.layers
                fig.add_trace(go.Scatter(
                    x=[row.layer for row in layers], y=[row.drift for row in layers], mode="lines+markers",
                    name=f"{method} seed {r.seed}", legendgroup=group, showlegend=False, opacity=0.35,
                    line={"color": palette[method], "width": 1}, marker={"size": 4},
                    customdata=[[r.seed, row.drift_debiased, row.ci_low, row.ci_high, row.cka, row.cosine]
                                for row in layers],
                    hovertemplate=(f"{task} · {method} · seed %{{customdata[0]}}<br>layer %{{x}}<br>drift %{{y:.5f}} "
                                   "[%{customdata[2]:.5f}, %{customdata[3]:.5f}] over samples<br>debiased %{customdata[1]:.5f}"
                                   "<br>CKA %{customdata[4]:.5f} · cosine %{customdata[5]:.4f}<extra></extra>")), row=1, col=col)
            curves = np.array([[row.drift for row in r.layers] for r in own], dtype=float)
            if curves.ndim != 2 or not curves.size:
                continue
            mean = curves.mean(0)
            sd = curves.std(0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
            fig.add_trace(go.Scatter(
                x=list(range(curves.shape[1])), y=mean.tolist(), mode="lines+markers", name=f"{method} (mean of {len(curves)} seeds)",
                legendgroup=group, showlegend=first or len(tasks) == 1, line={"color": palette[method], "width": 3},
                customdata=np.column_stack([sd, np.full_like(mean, len(curves))]).tolist(),
                hovertemplate=(f"{task} · {method}<br>layer %{{x}}<br>mean drift %{{y:.5f}} ± %{{customdata[0]:.5f}} (sd over "
                               "%{customdata[1]:.0f} seeds)<extra></extra>")), row=1, col=col)
        fig.update_xaxes(title_text="layer (0 = embeddings)", row=1, col=col)
        fig.update_yaxes(title_text="drift = 1 − linear CKA", rangemode="tozero", row=1, col=col)
    # No width: the figure fills the browser window.
    fig.update_layout(title="Drift by layer<br><sup>the mean over seeds (thick) and each seed (thin): hover for values, "
                            "click a legend entry to hide a method</sup>", hovermode="closest", height=520,
                      template="plotly_white")
    return fig


def frontier_figure(drift: dict[str, DriftRecord]) -> Any:
    """Per swept task: each sweep point (mean dev metric, geometric-mean drift, 95% intervals) and the
    seeds behind it (hover: seed, metric, drift); the points the verdicts compare drawn larger. None
    without a sweep."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from lorascope.report.sweep_text import METHOD_NAMES, selected_labels, setting_text

    tables = {t: d.frontier.table for t, d in drift.items() if d.frontier and d.frontier.table}
    tasks = list(tables)
    if not tasks:
        return None
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=[f"{t}: accuracy–drift frontier" for t in tasks])
    for col, task in enumerate(tasks, 1):
        d = drift[task]
        chosen = selected_labels(d)
        table = tables[task]
        palette = colours(r.method for r in table)
        for method in sorted({r.method for r in table}, key=lambda m: (m != "lora", m)):
            own = sorted((r for r in table if r.method == method and r.metric_mean is not None and r.drift_gmean),
                         key=lambda r: r.setting)
            labels = {r.label for r in own}
            seeds = [r for r in d.runs if r.method in labels and r.metric is not None]
            settings = {r.label: setting_text(r.setting) for r in own}
            fig.add_trace(go.Scatter(
                x=[r.metric for r in seeds], y=[r.mean_drift for r in seeds], mode="markers", opacity=0.45,
                name=f"{METHOD_NAMES.get(method, method)}: seeds", legendgroup=f"{task}/{method}", showlegend=col == 1,
                marker={"color": palette.get(method, "grey"), "size": 6, "symbol": "circle-open"},
                customdata=[[r.method, settings[r.method], r.seed] for r in seeds],
                hovertemplate=("%{customdata[0]} (setting %{customdata[1]}), seed %{customdata[2]}<br>dev metric %{x:.4f}"
                               "<br>mean drift %{y:.5f}<extra></extra>")), row=1, col=col)

            def errors(values: list[float], bounds: list[list[float | None]]) -> tuple[list[float], list[float]]:
                """Plotly's error bars (above, below) from [low, high] pairs (none where missing)."""
                up = [(b[1] - v) if b and b[1] is not None else 0.0 for v, b in zip(values, bounds)]
                down = [(v - b[0]) if b and b[0] is not None else 0.0 for v, b in zip(values, bounds)]
                return up, down

            x = [float(r.metric_mean or 0.0) for r in own]
            y = [float(r.drift_gmean or 0.0) for r in own]
            x_up, x_down = errors(x, [r.metric_ci for r in own])
            y_up, y_down = errors(y, [r.drift_ci for r in own])
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines+markers+text", text=[settings[r.label] for r in own], textposition="top right",
                name=f"{METHOD_NAMES.get(method, method)}: points in setting order", legendgroup=f"{task}/{method}",
                showlegend=col == 1, line={"color": palette.get(method, "grey")},
                marker={"size": [16 if r.label in chosen else 8 for r in own], "line": {"width": 2, "color": "black"}},
                error_x={"type": "data", "array": x_up, "arrayminus": x_down},
                error_y={"type": "data", "array": y_up, "arrayminus": y_down},
                customdata=[[r.label, r.n_seeds, "yes" if r.label in chosen else "no"] for r in own],
                hovertemplate=("%{customdata[0]} (%{customdata[1]} seeds; compared by the verdicts: %{customdata[2]})"
                               "<br>mean dev metric %{x:.4f}<br>geometric-mean drift %{y:.5f}<extra></extra>")), row=1, col=col)
        fig.update_xaxes(title_text="mean dev metric", row=1, col=col)
        fig.update_yaxes(title_text="geometric-mean drift over seeds (log scale)", type="log", row=1, col=col)
    fig.update_layout(title="Accuracy–drift frontier<br><sup>sweep points with 95% intervals over seeds (large: compared "
                            "by the verdicts) and the seeds behind each: hover for values</sup>", hovermode="closest",
                      height=560, template="plotly_white")
    return fig


def interactive_figures(data: StudyRecords, out: Path) -> dict[str, Path]:
    """Write the interactive figures the study has into ``out`` (``drift_by_layer.html``, and
    ``frontier.html`` with a sweep); returns name -> path, empty without plotly or drift results.
    Files from an earlier build that this one does not write are removed (the report would not link them)."""
    for name in FILES.values():
        (out / name).unlink(missing_ok=True)
    drift = data.drift
    if missing_modules("plotly") or not any(d.runs for d in drift.values()):
        return {}
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, fig in (("drift_by_layer", drift_by_layer_figure(drift)), ("frontier", frontier_figure(drift))):
        if fig is None:
            continue
        path = out / FILES[name]
        # The whole plotly.js inside the file (about 4.7 MB): it opens offline, from any folder.
        fig.write_html(path, include_plotlyjs=True, full_html=True, config={"displaylogo": False})
        written[name] = path
    return written
