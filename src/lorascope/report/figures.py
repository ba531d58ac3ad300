"""Figures of a study (matplotlib, Agg): layer profiles, heatmap, reduction bars, metric vs drift."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

from lorascope.bench.record import BenchRecord
from lorascope.drift.record import DriftRecord
from lorascope.metrics import format_number
from lorascope.report.collect import StudyRecords
from lorascope.variants import recorded_primary

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLOURS = {"lora": "#1f77b4", "full": "#d62728"}
_VARIANT_COLOURS = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def method_colours(labels: Iterable[str]) -> dict[str, str]:
    """A fixed colour per method label: lora blue, full red, variants from a palette in name order."""
    from lorascope.variants import natural_key

    variants = sorted({label for label in labels if label not in COLOURS}, key=natural_key)
    return {**COLOURS, **{v: _VARIANT_COLOURS[i % len(_VARIANT_COLOURS)] for i, v in enumerate(variants)}}


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label(task: str, weak: AbstractSet[str]) -> str:
    """A task's name, marked where its models did not learn it (the report sets those tasks apart; so do the figures)."""
    return f"{task} (did not learn)" if task in weak else task


def layer_profiles(drift: dict[str, DriftRecord], out: Path, weak: AbstractSet[str] = frozenset()) -> Path | None:
    """Drift per layer for each task: mean over seeds, band = ± 1 sd over seeds."""
    if not drift:
        return None
    fig, axes = plt.subplots(1, len(drift), figsize=(4.6 * len(drift), 3.6), squeeze=False)
    for ax, (task, d) in zip(axes[0], drift.items()):
        colours = method_colours(r.method for r in d.runs)
        for method in sorted({r.method for r in d.runs}):
            curves = np.array([[row.drift for row in r.layers] for r in d.runs if r.method == method], dtype=float)
            x = np.arange(curves.shape[1])
            mean = curves.mean(0)
            sd = curves.std(0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
            ax.plot(x, mean, color=colours[method], label=f"{method}: mean of {len(curves)} seeds, band ± 1 sd",
                    marker="o", ms=3)
            # Drift is never negative: the band is clipped at 0 rather than drawn below it.
            ax.fill_between(x, np.maximum(mean - sd, 0), mean + sd, color=colours[method], alpha=0.2)
        ax.set_title(f"{_label(task, weak)}: drift from base by layer")
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel("drift = 1 − linear CKA")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, out / "drift_by_layer.png")


def heatmap(drift: dict[str, DriftRecord], out: Path, weak: AbstractSet[str] = frozenset()) -> Path | None:
    """Layers × (task, method) mean drift."""
    rows, labels = [], []
    for task, d in drift.items():
        for method, s in d.methods.items():
            rows.append(s.layer_drift_mean)
            labels.append(f"{_label(task, weak)} {method}")
    if not rows:
        return None
    width = max(len(r) for r in rows)
    data = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        data[i, : len(r)] = r
    fig, ax = plt.subplots(figsize=(min(2 + 0.35 * width, 14), 1 + 0.45 * len(rows)))
    im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_title("mean drift (1 − CKA) over seeds")
    fig.colorbar(im, ax=ax, label="drift")
    return _save(fig, out / "drift_heatmap.png")


def reduction_bars(drift: dict[str, DriftRecord], out: Path, weak: AbstractSet[str] = frozenset()) -> Path | None:
    """Mean drift per task and method with its 95% interval over seeds and samples, and the reduction Δ%."""
    from lorascope.report.learning import reference_of

    tasks = [t for t, d in drift.items() if {recorded_primary(d.primary), reference_of(d)} <= set(d.methods)]
    if not tasks:
        return None
    fig, ax = plt.subplots(figsize=(max(4.6, 1.8 + 1.6 * len(tasks)), 3.6))
    x = np.arange(len(tasks))
    for j, method in enumerate(("lora", "full")):
        # "lora" is each task's primary LoRA method (a variant where the study has no plain lora).
        labels = [recorded_primary(drift[t].primary) if method == "lora" else reference_of(drift[t]) for t in tasks]
        means = [drift[t].methods[m].drift.mean or 0.0 for t, m in zip(tasks, labels)]
        bounds = [drift[t].methods[m].drift.ci_seeds_samples or [mean, mean] for t, m, mean in zip(tasks, labels, means)]
        err = np.array([[m - max(lo if lo is not None else m, 0.0), (hi if hi is not None else m) - m]
                        for m, (lo, hi) in zip(means, bounds)]).T  # drift is never negative: clip at 0
        name = labels[0] if len(set(labels)) == 1 else method
        ax.bar(x + (j - 0.5) * 0.38, means, 0.38, yerr=err, capsize=4, color=COLOURS[method], label=name)
    for i, t in enumerate(tasks):
        red = drift[t].comparison.reduction_percent
        if red is not None:
            top = max(drift[t].methods[m].drift.mean or 0.0 for m in (recorded_primary(drift[t].primary),
                                                                      reference_of(drift[t])))
            # Models that did not learn: no reduction is offered as a finding, here as in the text.
            on_log = (drift[t].comparison.reduction_scale or "").startswith("geometric")
            note = "no Δ: did not learn" if t in weak else f"Δ {format_number(red, 0)}%" + (" (geometric mean)" if on_log else "")
            ax.annotate(note, (i, top), ha="center", va="bottom", fontsize=9, xytext=(0, 8), textcoords="offset points")
    ax.set_xticks(x, [_label(t, weak) for t in tasks])
    ax.set_ylabel("mean drift over layers\n(95% CI over seeds + samples)")
    ax.set_title("drift from base: LoRA vs full fine-tuning")
    ax.legend()
    ax.margins(y=0.2)
    return _save(fig, out / "drift_reduction.png")


def metric_vs_drift(drift: dict[str, DriftRecord], out: Path, weak: AbstractSet[str] = frozenset(),
                    metrics: dict[str, str | None] | None = None) -> Path | None:
    """Each run: its dev main metric (``metrics``: task -> its name) against its mean drift."""
    from lorascope.metrics import is_percentage

    points = [(t, r, r.metric) for t, d in drift.items() for r in d.runs if r.metric is not None]
    if not points:
        return None
    # Percent where every task's metric is a share; one shared axis cannot show Matthews' −1..1 as a percentage.
    percent = all(is_percentage((metrics or {}).get(t)) for t in drift)
    scale = 100 if percent else 1
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    markers = dict(zip(drift, "osD^v<>"))
    colours = method_colours(r.method for _, r, _ in points)
    for t, r, metric in points:
        ax.scatter(r.mean_drift, scale * metric, color=colours[r.method], marker=markers[t], s=40)
    for t in drift:
        ax.scatter([], [], color="grey", marker=markers[t], label=_label(t, weak))
    for m in sorted({r.method for _, r, _ in points}, key=lambda m: (m == "full", m not in COLOURS, m)):
        ax.scatter([], [], color=colours[m], marker="s", label=m)
    ax.set_xlabel("mean drift over layers")
    ax.set_ylabel("dev main metric (%)" if percent else "dev main metric\n(shares as fractions, Matthews on −1..1)")
    ax.set_title("task performance vs drift, one point per run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "metric_vs_drift.png")


def _errors(values: list[float], bounds: list[list[float | None] | None], floor: float | None = None) -> np.ndarray:
    """Asymmetric error bars [2, n] from intervals (an undefined bound draws no bar on its side)."""
    out = []
    for v, b in zip(values, bounds):
        lo, hi = (b or (None, None))[:2]
        lo = v if lo is None else (max(lo, floor) if floor is not None else lo)
        out.append([v - lo, (v if hi is None else hi) - v])
    return np.array(out, dtype=float).T.reshape(2, -1)


def frontier_figure(drift: dict[str, DriftRecord], out: Path, metrics: dict[str, str | None] | None = None) -> Path | None:
    """Each swept task's accuracy–drift frontier: one line per method through its points ordered by the
    setting, x = mean dev metric, y = geometric-mean drift on a log axis, error bars from both intervals,
    each point annotated with its setting and the points the verdicts compare circled."""
    from lorascope.metrics import is_percentage
    from lorascope.report.sweep_text import METHOD_NAMES, selected_labels, setting_text

    tables = {t: d.frontier.table for t, d in drift.items() if d.frontier and d.frontier.table}
    tasks = list(tables)
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.4 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        d = drift[task]
        scale = 100 if is_percentage((metrics or {}).get(task)) else 1
        rows = tables[task]
        chosen = selected_labels(d)
        for method in sorted({r.method for r in rows}, key=lambda m: (m != "lora", m)):
            own = sorted(((r, r.metric_mean, r.drift_gmean) for r in rows if r.method == method), key=lambda r: r[0].setting)
            own_points = [(r, metric, drift) for r, metric, drift in own if metric is not None and drift]
            if not own_points:
                continue
            x = [scale * metric for _, metric, _ in own_points]
            y = [drift for _, _, drift in own_points]
            xerr = _errors(x, [[None if b is None else scale * b for b in r.metric_ci] for r, _, _ in own_points])
            yerr = _errors(y, [r.drift_ci for r, _, _ in own_points], floor=1e-12)  # a log axis cannot reach 0
            colour = COLOURS.get(method, "grey")
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="-o", color=colour, capsize=3, ms=5,
                        label=f"{METHOD_NAMES.get(method, method)}: points in setting order")
            for (r, _, _), xi, yi in zip(own_points, x, y):
                ax.annotate(setting_text(r.setting), (xi, yi), xytext=(5, 5), textcoords="offset points", fontsize=8)
            picked = [(xi, yi) for (r, _, _), xi, yi in zip(own_points, x, y) if r.label in chosen]
            if picked:
                ax.scatter(*zip(*picked), s=180, facecolors="none", edgecolors="black", linewidths=1.5, zorder=5)
        if chosen:
            ax.scatter([], [], s=180, facecolors="none", edgecolors="black", linewidths=1.5, label="compared by the verdicts")
        ax.set_yscale("log")
        ax.set_xlabel("mean dev metric (%)" if scale == 100 else "mean dev metric")
        ax.set_ylabel("geometric-mean drift over seeds (log scale)")
        ax.set_title(f"{task}: accuracy–drift frontier\n(95% CIs over seeds; labels: setting)", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return _save(fig, out / "frontier.png")


def bench_latency(bench: BenchRecord | None, out: Path) -> Path | None:
    """Latency ratio to the merged model per strategy and batch size."""
    rows = [(r.strategy, r.batch_size, r.ratio_to_merged) for r in (bench.results if bench else [])
            if r.ratio_to_merged is not None]
    if not rows:
        return None
    strategies = list(dict.fromkeys(s for s, _, _ in rows))
    batches = sorted({b for _, b, _ in rows})
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.42 * len(strategies)))
    for j, b in enumerate(batches):
        vals = [next((ratio for s2, b2, ratio in rows if s2 == s and b2 == b), np.nan) for s in strategies]
        ax.barh(np.arange(len(strategies)) + j * 0.8 / len(batches), vals, 0.8 / len(batches), label=f"batch {b}")
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(np.arange(len(strategies)) + 0.4 - 0.4 / len(batches), strategies)
    ax.set_xlabel("latency / merged-model latency (same run, same batch size)")
    ax.set_title("serving cost relative to the merged model")
    ax.legend(fontsize=8)
    return _save(fig, out / "serving_ratio.png")


def _lens_sds(data: StudyRecords, task: str, where: str, label: str) -> tuple[float, float]:
    """(sd over seeds of the LoRA method, of full FT) for one lens; 0 where not known."""
    if where == "drift":
        from lorascope.report.learning import reference_of

        drift = data.drift[task]
        return drift.methods[label].drift.sd or 0.0, drift.methods[reference_of(drift)].drift.sd or 0.0
    kind, measure = where.split(":")
    c = data.lens(kind)[task].comparison
    m = (c if label == c.primary else c.variants[label]).measures[measure]
    return m.lora_sd or 0.0, m.full_sd or 0.0


def rank_figure(data: StudyRecords, out: Path) -> Path | None:
    """Each lens against LoRA rank, one panel per lens and a row per task: every LoRA variant (mean ± sd
    over seeds) and full fine-tuning as measured for that variant's comparison (grey ×)."""
    from lorascope.report.lenses_text import LENSES, lens_values

    panels = []  # (task, lens name, where, [(label, rank)])
    for task, d in data.drift.items():
        ranks = {label: (d.variants.get(label) or {}).get("lora_r") for label in d.comparisons}
        ranked = [(label, r) for label, r in ranks.items() if isinstance(r, int) and r]
        if len({r for _, r in ranked}) < 2:
            continue
        for name, where, _ in LENSES:
            if any(lens_values(data, task, where, label) for label, _ in ranked):
                panels.append((task, name, where, ranked))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4), squeeze=False)
    for ax, (task, name, where, ranked) in zip(axes[0], panels):
        scale = 100 if where.startswith("probes") else 1
        for i, (label, rank) in enumerate(ranked):
            found = lens_values(data, task, where, label)
            if found is None:
                continue
            sd_lora, sd_full = _lens_sds(data, task, where, label)
            ax.errorbar(rank, scale * found[0], yerr=scale * sd_lora, fmt="o", capsize=3, color=f"C{i}", label=label)
            ax.errorbar(rank, scale * found[1], yerr=scale * sd_full, fmt="x", capsize=3, color="grey",
                        label="full FT" if i == 0 else None)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("LoRA rank r")
        ax.set_title(f"{task}: {name}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("each lens against LoRA rank: mean ± 1 sd over seeds", fontsize=10)
    return _save(fig, out / "lenses_by_rank.png")


def all_figures(data: StudyRecords, out: Path) -> dict[str, Path]:
    """Draw every figure the study's results allow into ``out``; returns name -> file of those drawn."""
    from lorascope.report.learning import main_metric, not_learned

    out.mkdir(parents=True, exist_ok=True)
    weak = set(not_learned(data))
    made = {
        "drift_by_layer": layer_profiles(data.drift, out, weak),
        "drift_heatmap": heatmap(data.drift, out, weak),
        "drift_reduction": reduction_bars(data.drift, out, weak),
        "metric_vs_drift": metric_vs_drift(data.drift, out, weak, {t: main_metric(data, t) for t in data.drift}),
        "frontier": frontier_figure(data.drift, out, {t: main_metric(data, t) for t in data.drift}),
        "lenses_by_rank": rank_figure(data, out),
        "serving_ratio": bench_latency(data.bench, out),
    }
    return {k: v for k, v in made.items() if v is not None}
