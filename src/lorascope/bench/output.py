"""Tidy output of the serving benchmark: one row per strategy × batch size, as CSV and as tables."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

if TYPE_CHECKING:
    from lorascope.bench.record import BenchRecord, EndpointSection

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


def results_table(bench: BenchRecord) -> Table:
    """The headline table: latency, interval, throughput and ratio to merged per strategy × batch size."""
    env = bench.environment
    labels = []
    if bench.synthetic_adapters:
        labels.append("synthetic adapters")
    if bench.full_ft is not None and bench.full_ft.stand_in:
        labels.append("full_ft = base model stand-in")
    model = bench.base_model.name if bench.base_model else "?"
    # The CPU's device name already ends in brackets ("CPU (x86_64)"): the settings follow it after commas.
    title = (f"serving cost: {model} on {env.device_name}, {env.dtype}, "
             f"{env.threads} threads{'; ' + ', '.join(labels) if labels else ''}")
    table = Table(title=title, box=box.SIMPLE_HEAD)
    endpoint = bench.endpoint is not None
    columns = ["strategy", "batch", "mean ms [95% CI]", "p50 ms", "p95 ms", "p99 ms", "rows/s", "× merged [95% CI]"]
    columns += ["× in-process [95% CI]"] if endpoint else []
    for col in [*columns, "check"]:
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
    for r in bench.results:
        check = {True: "ok", False: "FAIL", None: "-"}[r.check_passed]
        cells = [
            r.strategy, str(r.batch_size), f"{_ms(r.mean_ms)} [{_ms(r.ci_low_ms)}, {_ms(r.ci_high_ms)}]",
            _ms(r.p50_ms), _ms(r.p95_ms), _ms(r.p99_ms), _ms(r.throughput_rps, 1),
            _ratio(r.ratio_to_merged, r.ratio_ci_low, r.ratio_ci_high),
        ]
        if endpoint:
            cells.append(_ratio(r.overhead_ratio, r.overhead_ci_low, r.overhead_ci_high))
        table.add_row(*cells, check)
    return table


def _ms(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None, low: float | None, high: float | None) -> str:
    return "-" if value is None else f"{value:.3f} [{_ms(low, 3)}, {_ms(high, 3)}]"


def endpoint_table(endpoint: EndpointSection) -> Table:
    """The endpoint under 1..C concurrent clients: rows/s, latency, errors, per batch size."""
    table = Table(title=f"{endpoint.strategy} ({endpoint.url}) under concurrent clients (closed loop)", box=box.SIMPLE_HEAD)
    for col in ("batch", "clients", "answered", "errors", "rows/s", "× in-process rows/s", "p50 ms [95% CI]", "p99 ms"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in endpoint.concurrency:
        p50 = "-" if r.p50_ms is None else f"{r.p50_ms:.2f} [{_ms(r.p50_ci_low_ms)}, {_ms(r.p50_ci_high_ms)}]"
        table.add_row(str(r.batch_size), str(r.concurrency), f"{r.n}/{r.requests}", str(r.errors),
                      _ms(r.throughput_rps, 1), _ms(r.throughput_vs_inprocess), p50, _ms(r.p99_ms))
    return table


def endpoint_lines(endpoint: EndpointSection) -> list[str]:
    """One line per batch size with the HTTP overhead, then the correctness check, as plain text."""
    lines = []
    for o in endpoint.overhead:
        added = "-" if o.added_ms is None else f"{o.added_ms:+.2f}"
        lines.append(f"HTTP overhead at batch {o.batch_size}: {endpoint.strategy} {_ms(o.endpoint_mean_ms)} ms vs "
                     f"{endpoint.reference} {_ms(o.inprocess_mean_ms)} ms = {_ms(o.overhead_ratio, 3)}× "
                     f"[{_ms(o.overhead_ci_low, 3)}, {_ms(o.overhead_ci_high, 3)}] ({added} ms; "
                     f"medians {_ms(o.p50_overhead_ratio, 3)}×)")
    c = endpoint.check
    diff = "" if c.max_abs_prob_diff is None else f", max |Δ prob| {c.max_abs_prob_diff:.2e}"
    lines.append(f"endpoint answers vs in-process: {c.rows} rows, {100 * c.agreement:.2f}% same prediction"
                 f"{diff} (tolerance {c.tolerance:.0e}): {'pass' if c.passed else 'FAIL'}")
    return lines


def resources_table(bench: BenchRecord) -> Table:
    """Load time, memory and artifact size per strategy."""
    table = Table(title="load time, memory, artifact on disk (per strategy; shared groups load once)", box=box.SIMPLE_HEAD)
    for col in ("strategy", "adapters", "load s", "tensors", "CUDA resident", "RSS Δ at load", "artifact"):
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
    for name, s in bench.strategies.items():
        mem = s.memory
        artifact = human_bytes(s.artifact_bytes) + (" (est.)" if s.artifact_estimated else "")
        table.add_row(name, str(len(s.adapters)), _ms(s.load_s), human_bytes(mem.model_tensor_bytes),
                      human_bytes(mem.cuda_resident_bytes), human_bytes(mem.rss_load_delta_bytes), artifact)
    return table
