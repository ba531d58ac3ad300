"""The serving-cost section (RQ2): latency ratios with intervals and the H2 verdict per strategy,
correctness checks, load time, memory and artifact size, and the A/A noise estimate; with an HTTP
endpoint measured alongside, its rows beside the in-process ones, its overhead over the in-process
runtime, its throughput under concurrent clients and its answers against the runtime's."""

from __future__ import annotations

from typing import Any

from lorascope.report.reference import REFERENCE_SERVING
from lorascope.report.text import interval, table

# Strategies that are not "serving adapters separately": the baseline and the A/A partner.
NOT_H2 = ("lora_merged", "full_ft")


def _rows(bench: dict[str, Any] | None) -> list[dict[str, Any]]:
    return (bench or {}).get("results") or []


def merged_ratio_row(bench: dict[str, Any] | None, strategy: str, batch: int) -> dict[str, Any] | None:
    """The benchmark row of ``strategy`` at batch size ``batch`` that has a ratio to the merged model, or None."""
    return next((r for r in _rows(bench) if r["strategy"] == strategy and r["batch_size"] == batch
                 and r.get("ratio_to_merged") is not None), None)


def h2_of(row: dict[str, Any]) -> str | None:
    """A result row's H2 verdict (``h2_at_most_30pct`` in bench.json files written before the threshold was a setting)."""
    return row.get("h2") or row.get("h2_at_most_30pct")


def h2_max_ratio(bench: dict[str, Any] | None) -> float:
    """H2's threshold as the benchmark ran it (1.30, the protocol's, where bench.json does not record it)."""
    return float(((bench or {}).get("config") or {}).get("h2_max_ratio", 1.30))


def h2_rows(bench: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The benchmark rows with an H2 verdict (strategies H2 is not about left out)."""
    return [r for r in _rows(bench) if r["strategy"] not in NOT_H2 and h2_of(r)]


def aa_noise(bench: dict[str, Any] | None) -> str | None:
    """Full FT and merged LoRA have the same architecture and size: their ratio is measurement noise."""
    rows = [r for r in _rows(bench) if r["strategy"] == "full_ft" and r.get("ratio_to_merged") is not None]
    if not rows or (bench or {}).get("full_ft", {}).get("stand_in"):
        return None
    spread = max(abs(r["ratio_to_merged"] - 1) for r in rows)
    parts = ", ".join(f"batch {r['batch_size']}: {r['ratio_to_merged']:.3f}× "
                      f"{interval(r['ratio_ci_low'], r['ratio_ci_high'])}" for r in rows)
    return (f"A/A check: the full fine-tuned model and the merged LoRA model have the same architecture and size, yet "
            f"differ by up to {100 * spread:.1f}% ({parts}); differences between strategies of that size are "
            "measurement noise on this machine, not effects.")


def _ratio_cell(value: float | None, low: float | None, high: float | None) -> str:
    return "–" if value is None else f"{value:.3f} {interval(low, high)}"


def _latency_table(rows: list[dict[str, Any]], max_ratio: float, endpoint: bool = False) -> str:
    """One row per strategy × batch size; with an endpoint, a column of its ratio to the in-process runtime."""
    body = []
    for r in rows:
        line = [r["strategy"], r["batch_size"], f"{r['mean_ms']:.2f} {interval(r.get('ci_low_ms'), r.get('ci_high_ms'), 2)}",
                f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['throughput_rps']:.1f}",
                _ratio_cell(r.get("ratio_to_merged"), r.get("ratio_ci_low"), r.get("ratio_ci_high"))]
        if endpoint:
            line.append(_ratio_cell(r.get("overhead_ratio"), r.get("overhead_ci_low"), r.get("overhead_ci_high")))
        body.append([*line, "–" if r["strategy"] in NOT_H2 else (h2_of(r) or "–")])
    header = ["strategy", "batch", "mean ms [95% CI]", "p50", "p95", "p99", "rows/s", "× merged [95% CI]"]
    header += ["× in-process [95% CI]"] if endpoint else []
    return table([*header, f"H2 (≤ {max_ratio:.2f}×)"], body)


def endpoint_section(bench: dict[str, Any]) -> list[str]:
    """The HTTP endpoint's subsection: overhead per batch size, throughput per concurrency, correctness."""
    ep = bench.get("endpoint")
    if not ep:
        return []
    who = ep.get("owned_by") or "an unknown server"
    where = "on another machine (network included)" if ep.get("remote") else "on loopback"
    out = ["", "### HTTP endpoint", "",
           f"`{ep['strategy']}` is {ep['url']} ({who}, {where}), timed wall-clock on the client from sending a request to "
           f"its answer parsed; `{ep['reference']}` is lorascope's runtime serving the same requests in process. Both were "
           "interleaved with the strategies above, on requests of one adapter each (the protocol names one model per "
           "request) built from the same dev rows. × in-process is the ratio of mean latencies with a paired bootstrap "
           "95% interval: what the HTTP path adds (JSON, HTTP, the server's event loop, tokenisation, its batcher).", ""]
    body = [[o["batch_size"], f"{o['inprocess_mean_ms']:.2f}", f"{o['endpoint_mean_ms']:.2f}", f"{o['added_ms']:+.2f}",
             f"{o['inprocess_p50_ms']:.2f} / {o['endpoint_p50_ms']:.2f}", f"{o['inprocess_p99_ms']:.2f} / {o['endpoint_p99_ms']:.2f}",
             _ratio_cell(o["overhead_ratio"], o["overhead_ci_low"], o["overhead_ci_high"]), f"{o['p50_overhead_ratio']:.3f}"]
            for o in ep.get("overhead") or []]
    out.append(table(["batch", "in-process ms", "endpoint ms", "added ms", "p50 in / end", "p99 in / end",
                      "× in-process [95% CI]", "× (medians)"], body))
    sweep = ep.get("concurrency") or []
    if sweep:
        def fmt(v: float | None, d: int = 1) -> str:
            return "–" if v is None else f"{v:.{d}f}"

        body = [[r["batch_size"], r["concurrency"], f"{r['n']}/{r['requests']}", r["errors"], fmt(r["throughput_rps"]),
                 fmt(r["throughput_vs_inprocess"], 2),
                 "–" if r["p50_ms"] is None else f"{r['p50_ms']:.2f} {interval(r['p50_ci_low_ms'], r['p50_ci_high_ms'], 2)}",
                 fmt(r["p99_ms"], 2)] for r in sweep]
        out += ["", "Under concurrent clients (closed loop: each sends its next request when its answer arrives); rows/s "
                "over the wall time, × in-process against the runtime serving one request at a time:", "",
                table(["batch", "clients", "answered", "errors", "rows/s", "× in-process rows/s", "p50 ms [95% CI]",
                       "p99 ms"], body)]
    c = ep.get("check") or {}
    if c:
        diff = "" if c.get("max_abs_prob_diff") is None else f", max |Δ probability| {c['max_abs_prob_diff']:.2e}"
        tol = "" if c.get("tolerance") is None else f" (tolerance {c['tolerance']:.0e})"
        agree = "–" if not c.get("rows") else f"{100 * c['agreement']:.1f}%"
        verdict = "pass" if c.get("passed") else "**FAIL**"
        out += ["", f"Correctness: every answer against the in-process runtime on the same request: {c.get('rows', 0)} rows, "
                f"same prediction: {agree}{diff}{tol}: {verdict}."]
        if c.get("first_mismatches"):
            out.append("First differing rows: " + "; ".join(
                f"batch {m['batch_size']} request {m['request']} row {m['row']} ({m['adapter']}): endpoint "
                f"{m['endpoint_label']}, in process {m['inprocess_label']}" for m in c["first_mismatches"][:5]) + ".")
    return out


def _checks_table(bench: dict[str, Any]) -> str:
    body = [[c["strategy"], c["compared_with"], c["rows"], f"{c['max_abs_diff']:.2e}", f"{c['tolerance']:.0e}",
             f"{100 * c['agreement']:.1f}%", "pass" if c["passed"] else "**FAIL**"] for c in bench.get("checks", [])]
    return table(["strategy", "compared with", "rows", "max |Δ logit|", "tolerance", "same prediction", "result"], body)


def _resources_table(bench: dict[str, Any]) -> str:
    from lorascope.bench.report import human_bytes

    body = []
    for name, s in bench.get("strategies", {}).items():
        mem = s["memory"]
        artifact = human_bytes(s["artifact_bytes"]) + (" (est.)" if s["artifact_estimated"] else "")
        body.append([name, len(s["adapters"]), f"{s['load_s']:.2f}", human_bytes(mem["model_tensor_bytes"]),
                     human_bytes(mem.get("cuda_resident_bytes")), human_bytes(mem.get("rss_load_delta_bytes")), artifact])
    return table(["strategy", "adapters", "load s", "tensors in memory", "CUDA resident", "RSS Δ at load",
                  "artifact on disk"], body)


def serving_section(bench: dict[str, Any] | None, figures: dict[str, str]) -> str:
    """The report's "Serving cost" section: latencies and ratios to the merged model, with H2's verdicts."""
    rows = _rows(bench)
    if bench is None or not rows:  # no bench: no rows
        return "## Serving cost\n\nNo serving benchmark in this study."
    env = bench.get("environment") or {}
    model = (bench.get("base_model") or {}).get("name", "?")
    labels = []
    if bench.get("synthetic_adapters"):
        labels.append("synthetic adapters: latency depends on shapes, not values")
    if (bench.get("full_ft") or {}).get("stand_in"):
        labels.append("full_ft is the base model standing in for a fully fine-tuned one")
    n: dict[str, Any] = next(iter((bench.get("requests") or {}).values()), {})
    out = ["## Serving cost", "",
           f"Device: {env.get('device_name', '?')} ({env.get('dtype', '?')}, {env.get('threads', '?')} threads); base model "
           f"{model}; {n.get('measured', '?')} measured requests per strategy and batch size after {n.get('warmup', '?')} "
           "warm-up, all strategies interleaved in one run" + ("; " + "; ".join(labels) if labels else "") + ". "
           "× merged is the ratio of mean latencies to the merged model on the same requests, with a paired bootstrap "
           f"95% interval over requests; H2 is supported when the whole interval is at or below {h2_max_ratio(bench):.2f} and "
           "rejected when it is above.", "", _latency_table(rows, h2_max_ratio(bench), "endpoint" in bench)]
    sep = merged_ratio_row(bench, "lora_separate", 1)
    if sep is not None:
        out.append(f"\nReference study, PEFT separate vs merged at batch 1: "
                   f"{REFERENCE_SERVING['separate_vs_merged_batch1']:.3f}× (TinyLlama-1.1B on an L4 GPU).")
    noise = aa_noise(bench)
    if noise:
        out += ["", noise]
    out += endpoint_section(bench)
    if "serving_ratio" in figures:
        out.append(f"\n![serving_ratio]({figures['serving_ratio']})\n")
    out += ["", "### Correctness", "", "Every strategy's logits against single-adapter PEFT on the same requests: "
            + ("all checks pass." if bench.get("checks_passed") else "**a check FAILED.**"), "", _checks_table(bench)]
    out += ["", "### Load time, memory and size on disk", "", _resources_table(bench)]
    skipped = bench.get("skipped") or {}
    if skipped:
        out += ["", "Not measured: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "."]
    return "\n".join(out)
