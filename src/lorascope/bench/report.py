"""Tidy output of the serving benchmark: one row per strategy × batch size, as CSV and as tables."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

# Column order of bench.csv (every row of bench.json's "results" has these keys).
CSV_COLUMNS = (
    "strategy", "batch_size", "n", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "ci_low_ms", "ci_high_ms",
    "p50_ci_low_ms", "p50_ci_high_ms", "std_ms", "throughput_rps", "ratio_to_merged", "ratio_ci_low", "ratio_ci_high",
    "p50_ratio_to_merged", "h2", "overhead_ratio", "overhead_ci_low", "overhead_ci_high", "p50_overhead_ratio",
    "added_ms", "mean_seq_len", "adapters_loaded", "load_s", "model_tensor_bytes",
    "cuda_resident_bytes", "cuda_forward_peak_bytes", "rss_load_delta_bytes", "artifact_bytes", "artifact_estimated",
    "check_passed", "synthetic_adapters", "full_ft_stand_in", "device", "dtype", "threads", "description",
)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` with :data:`CSV_COLUMNS` (empty cells for None)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})


def human_bytes(n: float | None) -> str:
    """``1536`` -> ``1.5 KiB``; None -> ``-``."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def results_table(bench: dict[str, Any]) -> Table:
    """The headline table: latency, interval, throughput and ratio to merged per strategy × batch size."""
    env = bench["environment"]
    labels = []
    if bench["synthetic_adapters"]:
        labels.append("synthetic adapters")
    if bench["full_ft"]["stand_in"]:
        labels.append("full_ft = base model stand-in")
    title = (
        f"serving cost: {bench['base_model']['name']} on {env['device_name']} ({env['dtype']}, "
        f"{env['threads']} threads){'; ' + ', '.join(labels) if labels else ''}"
    )
    table = Table(title=title, box=box.SIMPLE_HEAD)
    endpoint = "endpoint" in bench
    columns = ["strategy", "batch", "mean ms [95% CI]", "p50 ms", "p95 ms", "p99 ms", "rows/s", "× merged [95% CI]"]
    columns += ["× in-process [95% CI]"] if endpoint else []
    for col in [*columns, "check"]:
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
    for r in bench["results"]:
        check = {True: "ok", False: "FAIL", None: "-"}[r["check_passed"]]
        cells = [
            r["strategy"], str(r["batch_size"]),
            f"{r['mean_ms']:.2f} [{r['ci_low_ms']:.2f}, {r['ci_high_ms']:.2f}]",
            f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['throughput_rps']:.1f}",
            _ratio(r.get("ratio_to_merged"), r.get("ratio_ci_low"), r.get("ratio_ci_high")),
        ]
        if endpoint:
            cells.append(_ratio(r.get("overhead_ratio"), r.get("overhead_ci_low"), r.get("overhead_ci_high")))
        table.add_row(*cells, check)
    return table


def _ratio(value: float | None, low: float | None, high: float | None) -> str:
    return "-" if value is None else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def endpoint_table(bench: dict[str, Any]) -> Table:
    """The endpoint under 1..C concurrent clients: rows/s, latency, errors, per batch size."""
    ep = bench["endpoint"]
    table = Table(title=f"{ep['strategy']} ({ep['url']}) under concurrent clients (closed loop)", box=box.SIMPLE_HEAD)
    for col in ("batch", "clients", "answered", "errors", "rows/s", "× in-process rows/s", "p50 ms [95% CI]", "p99 ms"):
        table.add_column(col, justify="right", no_wrap=True)

    def fmt(v: float | None, d: int = 1) -> str:
        return "-" if v is None else f"{v:.{d}f}"

    for r in ep["concurrency"]:
        p50 = "-" if r["p50_ms"] is None else f"{r['p50_ms']:.2f} [{r['p50_ci_low_ms']:.2f}, {r['p50_ci_high_ms']:.2f}]"
        table.add_row(str(r["batch_size"]), str(r["concurrency"]), f"{r['n']}/{r['requests']}", str(r["errors"]),
                      fmt(r["throughput_rps"]), fmt(r["throughput_vs_inprocess"], 2), p50, fmt(r["p99_ms"], 2))
    return table


def endpoint_lines(bench: dict[str, Any]) -> list[str]:
    """One line per batch size with the HTTP overhead, then the correctness check, as plain text."""
    ep = bench["endpoint"]
    lines = []
    for o in ep["overhead"]:
        lines.append(f"HTTP overhead at batch {o['batch_size']}: {ep['strategy']} {o['endpoint_mean_ms']:.2f} ms vs "
                     f"{ep['reference']} {o['inprocess_mean_ms']:.2f} ms = {o['overhead_ratio']:.3f}× "
                     f"[{o['overhead_ci_low']:.3f}, {o['overhead_ci_high']:.3f}] ({o['added_ms']:+.2f} ms; "
                     f"medians {o['p50_overhead_ratio']:.3f}×)")
    c = ep["check"]
    diff = "" if c["max_abs_prob_diff"] is None else f", max |Δ prob| {c['max_abs_prob_diff']:.2e}"
    tol = "" if c["tolerance"] is None else f" (tolerance {c['tolerance']:.0e})"
    lines.append(f"endpoint answers vs in-process: {c['rows']} rows, {100 * c['agreement']:.2f}% same prediction"
                 f"{diff}{tol}: {'pass' if c['passed'] else 'FAIL'}")
    return lines


def resources_table(bench: dict[str, Any]) -> Table:
    """Load time, memory and artifact size per strategy."""
    table = Table(title="load time, memory, artifact on disk (per strategy; shared groups load once)", box=box.SIMPLE_HEAD)
    for col in ("strategy", "adapters", "load s", "tensors", "CUDA resident", "RSS Δ at load", "artifact"):
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
    for name, s in bench["strategies"].items():
        mem = s["memory"]
        artifact = human_bytes(s["artifact_bytes"]) + (" (est.)" if s["artifact_estimated"] else "")
        table.add_row(
            name, str(len(s["adapters"])), f"{s['load_s']:.2f}", human_bytes(mem["model_tensor_bytes"]),
            human_bytes(mem["cuda_resident_bytes"]), human_bytes(mem["rss_load_delta_bytes"]), artifact,
        )
    return table
