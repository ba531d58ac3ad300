"""The serving-cost section (RQ2): latency ratios with intervals and the H2 verdict per strategy,
correctness checks, load time, memory and artifact size, and the A/A noise estimate; with an HTTP
endpoint measured alongside, its rows beside the in-process ones, its overhead over the in-process
runtime, its throughput under concurrent clients and its answers against the runtime's."""

from __future__ import annotations

from lorascope.bench.record import BenchRecord, BenchRow, EndpointSection
from lorascope.metrics import format_interval, format_number
from lorascope.report.reference import REFERENCE_SERVING
from lorascope.report.text import table

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
    """Full FT and merged LoRA have the same architecture and size: their ratio is measurement noise."""
    rows = [(r, r.ratio_to_merged) for r in _rows(bench) if r.strategy == "full_ft" and r.ratio_to_merged is not None]
    if not rows or (bench and bench.full_ft and bench.full_ft.stand_in):
        return None
    spread = max(abs(ratio - 1) for _, ratio in rows)
    parts = ", ".join(f"batch {r.batch_size}: {ratio:.3f}× {format_interval(r.ratio_ci_low, r.ratio_ci_high)}" for r, ratio in rows)
    return (f"A/A check: the full fine-tuned model and the merged LoRA model have the same architecture and size, yet "
            f"differ by up to {100 * spread:.1f}% ({parts}); differences between strategies of that size are "
            "measurement noise on this machine, not effects.")


def _ratio_cell(value: float | None, low: float | None, high: float | None) -> str:
    return "–" if value is None else f"{value:.3f} {format_interval(low, high)}"


def _latency_table(rows: list[BenchRow], max_ratio: float, endpoint: bool = False) -> str:
    """One row per strategy × batch size; with an endpoint, a column of its ratio to the in-process runtime."""
    body = []
    for r in rows:
        line = [r.strategy, r.batch_size, f"{format_number(r.mean_ms, 2)} {format_interval(r.ci_low_ms, r.ci_high_ms, 2)}",
                format_number(r.p50_ms, 2), format_number(r.p95_ms, 2), format_number(r.p99_ms, 2), format_number(r.throughput_rps, 1),
                _ratio_cell(r.ratio_to_merged, r.ratio_ci_low, r.ratio_ci_high)]
        if endpoint:
            line.append(_ratio_cell(r.overhead_ratio, r.overhead_ci_low, r.overhead_ci_high))
        body.append([*line, "–" if r.strategy in NOT_H2 else (r.h2 or "–")])
    header = ["strategy", "batch", "mean ms [95% CI]", "p50", "p95", "p99", "rows/s", "× merged [95% CI]"]
    header += ["× in-process [95% CI]"] if endpoint else []
    return table([*header, f"H2 (≤ {max_ratio:.2f}×)"], body)


def endpoint_section(ep: EndpointSection | None) -> list[str]:
    """The HTTP endpoint's subsection: overhead per batch size, throughput per concurrency, correctness."""
    if not ep:
        return []
    who = ep.owned_by or "an unknown server"
    where = "on another machine (network included)" if ep.remote else "on loopback"
    out = ["", "### HTTP endpoint", "",
           f"`{ep.strategy}` is {ep.url} ({who}, {where}), timed wall-clock on the client from sending a request to "
           f"its answer parsed; `{ep.reference}` is lorascope's runtime serving the same requests in process. Both were "
           "interleaved with the strategies above, on requests of one adapter each (the protocol names one model per "
           "request) built from the same dev rows. × in-process is the ratio of mean latencies with a paired bootstrap "
           "95% interval: what the HTTP path adds (JSON, HTTP, the server's event loop, tokenisation, its batcher).", ""]
    body = [[o.batch_size, format_number(o.inprocess_mean_ms, 2), format_number(o.endpoint_mean_ms, 2), f"{o.added_ms:+.2f}",
             f"{format_number(o.inprocess_p50_ms, 2)} / {format_number(o.endpoint_p50_ms, 2)}",
             f"{format_number(o.inprocess_p99_ms, 2)} / {format_number(o.endpoint_p99_ms, 2)}",
             _ratio_cell(o.overhead_ratio, o.overhead_ci_low, o.overhead_ci_high), format_number(o.p50_overhead_ratio)]
            for o in ep.overhead]
    out.append(table(["batch", "in-process ms", "endpoint ms", "added ms", "p50 in / end", "p99 in / end",
                      "× in-process [95% CI]", "× (medians)"], body))
    if ep.concurrency:
        body = [[r.batch_size, r.concurrency, f"{r.n}/{r.requests}", r.errors, format_number(r.throughput_rps, 1),
                 format_number(r.throughput_vs_inprocess, 2),
                 "–" if r.p50_ms is None else f"{r.p50_ms:.2f} {format_interval(r.p50_ci_low_ms, r.p50_ci_high_ms, 2)}",
                 format_number(r.p99_ms, 2)] for r in ep.concurrency]
        out += ["", "Under concurrent clients (closed loop: each sends its next request when its answer arrives); rows/s "
                "over the wall time, × in-process against the runtime serving one request at a time:", "",
                table(["batch", "clients", "answered", "errors", "rows/s", "× in-process rows/s", "p50 ms [95% CI]",
                       "p99 ms"], body)]
    c = ep.check
    diff = "" if c.max_abs_prob_diff is None else f", max |Δ probability| {c.max_abs_prob_diff:.2e}"
    agree = "–" if not c.rows else f"{100 * c.agreement:.1f}%"
    verdict = "pass" if c.passed else "**FAIL**"
    out += ["", f"Correctness: every answer against the in-process runtime on the same request: {c.rows} rows, "
            f"same prediction: {agree}{diff} (tolerance {c.tolerance:.0e}): {verdict}."]
    if c.first_mismatches:
        out.append("First differing rows: " + "; ".join(
            f"batch {m['batch_size']} request {m['request']} row {m['row']} ({m['adapter']}): endpoint "
            f"{m['endpoint_label']}, in process {m['inprocess_label']}" for m in c.first_mismatches[:5]) + ".")
    return out


def _checks_table(bench: BenchRecord) -> str:
    body = [[c.strategy, c.compared_with, c.rows, "–" if c.max_abs_diff is None else f"{c.max_abs_diff:.2e}",
             f"{c.tolerance:.0e}", f"{100 * c.agreement:.1f}%", "pass" if c.passed else "**FAIL**"] for c in bench.checks]
    return table(["strategy", "compared with", "rows", "max |Δ logit|", "tolerance", "same prediction", "result"], body)


def _resources_table(bench: BenchRecord) -> str:
    from lorascope.bench.report import human_bytes

    body = []
    for name, s in bench.strategies.items():
        artifact = human_bytes(s.artifact_bytes) + (" (est.)" if s.artifact_estimated else "")
        body.append([name, len(s.adapters), format_number(s.load_s, 2), human_bytes(s.memory.model_tensor_bytes),
                     human_bytes(s.memory.cuda_resident_bytes), human_bytes(s.memory.rss_load_delta_bytes), artifact])
    return table(["strategy", "adapters", "load s", "tensors in memory", "CUDA resident", "RSS Δ at load",
                  "artifact on disk"], body)


def serving_section(bench: BenchRecord | None, figures: dict[str, str]) -> str:
    """The report's "Serving cost" section: latencies and ratios to the merged model, with H2's verdicts."""
    rows = _rows(bench)
    if bench is None or not rows:  # no bench: no rows
        return "## Serving cost\n\nNo serving benchmark in this study."
    env = bench.environment
    model = bench.base_model.name if bench.base_model else "?"
    labels = []
    if bench.synthetic_adapters:
        labels.append("synthetic adapters: latency depends on shapes, not values")
    if bench.full_ft and bench.full_ft.stand_in:
        labels.append("full_ft is the base model standing in for a fully fine-tuned one")
    n = next(iter(bench.requests.values()), None)

    def known(value: object) -> object:
        return "?" if value is None else value

    out = ["## Serving cost", "",
           f"Device: {env.device_name} ({known(env.dtype)}, {known(env.threads)} threads); base model {model}; "
           f"{known(n and n.measured)} measured requests per strategy and batch size after {known(n and n.warmup)} "
           "warm-up, all strategies interleaved in one run" + ("; " + "; ".join(labels) if labels else "") + ". "
           "× merged is the ratio of mean latencies to the merged model on the same requests, with a paired bootstrap "
           f"95% interval over requests; H2 is supported when the whole interval is at or below {h2_max_ratio(bench):.2f} and "
           "rejected when it is above.", "", _latency_table(rows, h2_max_ratio(bench), "endpoint" in bench.model_fields_set)]
    sep = merged_ratio_row(bench, "lora_separate", 1)
    if sep is not None:
        out.append(f"\nReference study, PEFT separate vs merged at batch 1: "
                   f"{REFERENCE_SERVING['separate_vs_merged_batch1']:.3f}× (TinyLlama-1.1B on an L4 GPU).")
    noise = aa_noise(bench)
    if noise:
        out += ["", noise]
    out += endpoint_section(bench.endpoint)
    if "serving_ratio" in figures:
        out.append(f"\n![serving_ratio]({figures['serving_ratio']})\n")
    out += ["", "### Correctness", "", "Every strategy's logits against single-adapter PEFT on the same requests: "
            + ("all checks pass." if bench.checks_passed else "**a check FAILED.**"), "", _checks_table(bench)]
    out += ["", "### Load time, memory and size on disk", "", _resources_table(bench)]
    if bench.skipped:
        out += ["", "Not measured: " + "; ".join(f"{k} ({v})" for k, v in bench.skipped.items()) + "."]
    return "\n".join(out)
