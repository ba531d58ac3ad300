"""The serving-cost section (RQ2): latency ratios with intervals and the H2 verdict per strategy,
correctness checks, load time, memory and artifact size, and the A/A noise estimate; with an HTTP
endpoint measured alongside, its rows beside the in-process ones, its overhead over the in-process
runtime, its throughput under concurrent clients and its answers against the runtime's."""

from __future__ import annotations

from lorascope.bench.record import BenchRecord, BenchRow, EndpointSection
from lorascope.metrics import format_interval, format_number, format_scientific, format_share
from lorascope.report.reference import REFERENCE_SERVING
from lorascope.report.templating import render_template

# Strategies that are not "serving adapters separately": the baseline and the A/A partner.
NOT_H2 = ("lora_merged", "full_ft")


def _rows(bench: BenchRecord | None) -> list[BenchRow]:
    return bench.results if bench else []


def merged_ratio_row(bench: BenchRecord | None, strategy: str, batch: int) -> BenchRow | None:
    """The benchmark row of ``strategy`` at batch size ``batch`` that has a ratio to the merged model, or None."""
    return next((r for r in _rows(bench) if r.strategy == strategy and r.batch_size == batch
                 and r.ratio_to_merged is not None), None)


def h2_max_ratio(bench: BenchRecord | None) -> float:
    """H2's threshold as the benchmark ran it (1.30, the protocol's, where bench.json does not record it)."""
    value = bench.config.get("h2_max_ratio") if bench else None
    return float(value) if isinstance(value, (int, float)) else 1.30


def h2_rows(bench: BenchRecord | None) -> list[BenchRow]:
    """The benchmark rows with an H2 verdict (strategies H2 is not about left out)."""
    return [r for r in _rows(bench) if r.strategy not in NOT_H2 and r.h2]


def aa_noise(bench: BenchRecord | None) -> str | None:
    """The A/A check's sentence: full FT and merged LoRA have the same architecture and size, so their ratio is
    measurement noise (None without a full_ft ratio, or where the base model stood in for full FT)."""
    rows = [r for r in _rows(bench) if r.strategy == "full_ft" and r.ratio_to_merged is not None]
    if not rows or (bench and bench.full_ft and bench.full_ft.stand_in):
        return None
    spread = max(abs((r.ratio_to_merged or 0.0) - 1) for r in rows)
    return render_template("aa_noise.md.j2", rows=rows, spread=spread)


def _with_interval(value: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    """``value [low, high]`` with ``digits`` decimals, "–" without a value (a ratio, a latency)."""
    return "–" if value is None else f"{format_number(value, digits)} {format_interval(low, high, digits)}"


def endpoint_section(ep: EndpointSection | None) -> str:
    """The HTTP endpoint's subsection: overhead per batch size, throughput per concurrency, correctness ("" without one)."""
    if not ep:
        return ""
    overhead = [[o.batch_size, format_number(o.inprocess_mean_ms, 2), format_number(o.endpoint_mean_ms, 2), format_number(o.added_ms, 2, signed=True),
                 f"{format_number(o.inprocess_p50_ms, 2)} / {format_number(o.endpoint_p50_ms, 2)}",
                 f"{format_number(o.inprocess_p99_ms, 2)} / {format_number(o.endpoint_p99_ms, 2)}",
                 _with_interval(o.overhead_ratio, o.overhead_ci_low, o.overhead_ci_high), format_number(o.p50_overhead_ratio)]
                for o in ep.overhead]
    concurrency = [[r.batch_size, r.concurrency, f"{r.n}/{r.requests}", r.errors, format_number(r.throughput_rps, 1),
                    format_number(r.throughput_vs_inprocess, 2),
                    _with_interval(r.p50_ms, r.p50_ci_low_ms, r.p50_ci_high_ms, 2),
                    format_number(r.p99_ms, 2)] for r in ep.concurrency]
    return render_template("endpoint.md.j2", ep=ep, overhead=overhead, concurrency=concurrency)


def serving_section(bench: BenchRecord | None, figures: dict[str, str]) -> str:
    """The report's "Serving cost" section: latencies and ratios to the merged model, with H2's verdicts."""
    if bench is None or not bench.results:
        return render_template("serving.md.j2", bench=None)
    from lorascope.bench.output import human_bytes

    endpoint = "endpoint" in bench.model_fields_set  # a column for the endpoint's ratio to the in-process runtime
    latency = [[r.strategy, r.batch_size, f"{format_number(r.mean_ms, 2)} {format_interval(r.ci_low_ms, r.ci_high_ms, 2)}",
                format_number(r.p50_ms, 2), format_number(r.p95_ms, 2), format_number(r.p99_ms, 2),
                format_number(r.throughput_rps, 1), _with_interval(r.ratio_to_merged, r.ratio_ci_low, r.ratio_ci_high),
                *([_with_interval(r.overhead_ratio, r.overhead_ci_low, r.overhead_ci_high)] if endpoint else []),
                "–" if r.strategy in NOT_H2 else (r.h2 or "–")] for r in bench.results]
    checks = [[c.strategy, c.compared_with, c.rows, format_scientific(c.max_abs_diff),
               format_scientific(c.tolerance, 0), format_share(c.agreement, 1), "pass" if c.passed else "**FAIL**"] for c in bench.checks]
    resources = [[name, len(s.adapters), format_number(s.load_s, 2), human_bytes(s.memory.model_tensor_bytes),
                  human_bytes(s.memory.cuda_resident_bytes), human_bytes(s.memory.rss_load_delta_bytes),
                  human_bytes(s.artifact_bytes) + (" (est.)" if s.artifact_estimated else "")]
                 for name, s in bench.strategies.items()]
    separate = merged_ratio_row(bench, "lora_separate", 1)
    return render_template(
        "serving.md.j2", bench=bench, requests=next(iter(bench.requests.values()), None), max_ratio=h2_max_ratio(bench),
        known=lambda value: "?" if value is None else value, endpoint_column=endpoint, latency=latency,
        reference=REFERENCE_SERVING["separate_vs_merged_batch1"] if separate is not None else None, noise=aa_noise(bench),
        endpoint=endpoint_section(bench.endpoint), figure=figures.get("serving_ratio"), checks=checks,
        resources=resources)
