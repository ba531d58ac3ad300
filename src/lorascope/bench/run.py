"""``run_bench``: load every serving strategy, check it, time it interleaved, and write bench.json / bench.csv.

Reads top to bottom: set-up (adapters, requests) -> load each strategy (timed, memory measured) ->
correctness checks -> interleaved timing per batch size -> summary and ratios to the merged model.
The output folder is written as ``<out>.partial`` and renamed when complete.

With ``endpoint`` set, a running HTTP server is measured alongside (see :mod:`lorascope.bench.endpoint`):
it is asked what it serves before any model loads, its requests and their in-process counterpart join
the interleaved timing, its answers are checked against the in-process runtime's, and a concurrency
sweep follows the timing.
"""

from __future__ import annotations

import functools
import gc
import math
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lorascope.artifacts import Commit
from lorascope.bench.config import BASELINE, BenchConfig
from lorascope.bench.correctness import CheckResult, run_checks
from lorascope.bench.endpoint import (
    REFERENCE,
    REFERENCE_DESCRIPTION,
    EndpointCheck,
    EndpointClient,
    EndpointRun,
    ServerInfo,
    check_served,
    open_endpoint,
    overhead,
    served_names,
    start_endpoint_run,
)
from lorascope.bench.inputs import Batch, build_pool, make_batches, request_stats
from lorascope.bench.memory import (
    PeakMeter,
    parameter_count,
    peak_rss_bytes,
    reachable_tensor_bytes,
    rss_bytes,
    runtime_tensor_bytes,
)
from lorascope.bench.output import write_csv
from lorascope.bench.prepare import SYNTHETIC_FOLDER, Prepared, prepare
from lorascope.bench.record import BenchRecord, StrategyInfo, StrategyMemory
from lorascope.bench.strategies import CATALOGUE, Call, Group, LoadContext, groups_for, load_group, make_call
from lorascope.bench.timing import latency_summary, ratio_summary, time_interleaved
from lorascope.config import config_to_dict
from lorascope.errors import LorascopeError
from lorascope.provenance import provenance
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.sources import AdapterSource, folder_bytes

BYTES_PER_PARAM = {"fp32": 4, "bf16": 2}

Times = dict[int, dict[str, npt.NDArray[np.float64]]]  # batch size -> strategy -> ms per measured request


class LoadMemory(TypedDict):
    """What a group holds once loaded and primed (``strategies.*.memory`` of bench.json, less the forward peak)."""

    model_tensor_bytes: int
    cuda_resident_bytes: int | None
    rss_load_delta_bytes: int


class AdapterBytes(TypedDict):
    """An adapter's size on disk: its weight files, and its whole folder."""

    weights_bytes: int
    folder_bytes: int


class FullModelBytes(TypedDict):
    """The full fine-tuned model's weight bytes (None when unknown), and whether they are estimated."""

    bytes: int | None
    estimated: bool


def run_bench(cfg: BenchConfig, out: str | Path, *, overwrite: bool = False, show_progress: bool = True,
              endpoint_token: str | None = None) -> BenchRecord:
    """Measure every configured serving strategy on the same requests and save the results.

    Args:
        cfg: The benchmark configuration.
        out: Output folder: ``bench.json``, ``bench.csv``, ``config.yaml`` (and ``synthetic_adapters/``).
        overwrite: Replace an existing output folder.
        show_progress: Show a rich progress display.
        endpoint_token: Bearer token of ``cfg.endpoint`` (kept out of the config, which is saved).

    Returns:
        The :class:`~lorascope.bench.record.BenchRecord` written as ``bench.json``.

    Raises:
        LorascopeError: On bad input (model, adapters, data, an existing output folder), or an
            endpoint that cannot be reached, does not serve the adapters or refuses a request.
    """
    out = Path(out)
    unit = Commit(out, config_to_dict(cfg), overwrite=overwrite, seed=cfg.seed)
    unit.check()  # before an endpoint is opened
    client, info = open_endpoint(cfg, endpoint_token) if cfg.endpoint else (None, None)
    try:
        return _run(cfg, unit, show_progress, client, info)
    finally:
        if client is not None:
            client.close()


def _run(cfg: BenchConfig, unit: Commit, show_progress: bool, client: EndpointClient | None,
         info: ServerInfo | None) -> BenchRecord:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    partial = unit.begin()
    endpoint: EndpointRun | None = None
    endpoint_check: EndpointCheck | None = None
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      disable=not show_progress) as progress:
            step = progress.add_task("preparing model, adapters and requests", total=None)
            n_steps = cfg.warmup + cfg.requests
            prep = prepare(cfg, partial)
            if client is not None:
                assert info is not None and cfg.endpoint is not None  # open_endpoint gave both, for cfg.endpoint
                served = served_names(cfg, [a.name for a in prep.adapters])
                check_served(info, served, cfg.endpoint)  # before the models load: a wrong name costs nothing
            pool = build_pool(prep.tasks, prep.base, n_steps * max(cfg.batch_sizes), cfg.max_length, cfg.data_dir, cfg.seed)
            batches = {b: make_batches(pool, b, n_steps, prep.base, prep.device) for b in cfg.batch_sizes}
            progress.update(step, total=1, completed=1)

            strategies, skipped = _feasible(cfg.strategies, prep.adapters)
            ctx = LoadContext(prep.base, prep.adapters, cfg.dtype, prep.device, prep.full_model, cfg.merged_cache_size)
            meter = PeakMeter(prep.device)
            groups, memory = _load_all(strategies, ctx, batches[max(cfg.batch_sizes)][0], meter, progress)

            step = progress.add_task("correctness checks", total=1)
            b_max = max(cfg.batch_sizes)
            check_batches = batches[b_max][: math.ceil(cfg.check_rows / b_max)]
            checks = run_checks(strategies, groups, ctx, check_batches, cfg.atol("peft"), cfg.atol("runtime"))
            progress.update(step, completed=1)
            if client is not None:
                assert info is not None
                endpoint = start_endpoint_run(cfg, client, info, served, pool, prep.tasks, groups, ctx)

            calls = {s: make_call(s, groups[CATALOGUE[s][0]]) for s in strategies}
            forward_peaks = _forward_peaks(calls, batches, meter)
            times: Times = {}
            for b in cfg.batch_sizes:
                step = progress.add_task(f"timing batch size {b}", total=n_steps)
                timed: dict[str, Callable[[int], object]] = {s: _on_batches(calls[s], batches[b]) for s in strategies}
                if endpoint is not None:
                    timed.update(endpoint.calls(b))
                times[b] = time_interleaved(timed, cfg.warmup, cfg.requests, prep.device, functools.partial(progress.advance, step))
            if endpoint is not None:
                step = progress.add_task("endpoint under concurrency", total=len(cfg.batch_sizes) * len(cfg.endpoint_concurrency))
                single = {b: b * cfg.requests / (times[b][REFERENCE].sum() / 1e3) for b in cfg.batch_sizes}
                endpoint.sweep(cfg, single, functools.partial(progress.advance, step))
                endpoint_check = endpoint.check(cfg.endpoint_tolerance())
    except LorascopeError:
        unit.discard()  # bad input (model, adapter, data) leaves no folder behind
        raise

    bench = _assemble(cfg, prep, strategies, skipped, batches, groups=groups, memory=memory, forward_peaks=forward_peaks,
                      checks=checks, times=times, cuda_peak=meter.overall(), endpoint=endpoint, endpoint_check=endpoint_check)
    record = BenchRecord.create(**bench)
    record.write(partial)
    write_csv(partial / "bench.csv", bench["results"])
    unit.complete()
    return record


def _on_batches(call: Call, batches: list[Batch]) -> Callable[[int], torch.Tensor]:
    """``call`` serving request ``k`` on ``batches[k]``."""
    return lambda k: call(k, batches[k])


def _feasible(strategies: list[str], adapters: list[AdapterSource]) -> tuple[list[str], dict[str, str]]:
    """The strategies that can run on ``adapters``, and why each other one is skipped.

    The runtime's strategies are skipped (PEFT's still run) for adapters it cannot serve exactly, such as DoRA.
    """
    from lorascope.serve.adapter import runtime_refusal

    refusal = next((r for r in (runtime_refusal(a.folder) for a in adapters) if r), None)
    skipped = {s: f"needs {CATALOGUE[s][1]} adapters, {len(adapters)} given" for s in strategies
               if CATALOGUE[s][1] > len(adapters)}
    if refusal:
        skipped.update({s: refusal for s in strategies if s.startswith("runtime") and s not in skipped})
    return [s for s in strategies if s not in skipped], skipped


def _load_all(
    strategies: list[str], ctx: LoadContext, prime_batch: Batch, meter: PeakMeter, progress: Progress
) -> tuple[dict[str, Group], dict[str, LoadMemory]]:
    """Load each group in turn, prime it (fills caches and lazy state), and measure what it holds."""
    groups: dict[str, Group] = {}
    memory: dict[str, LoadMemory] = {}
    step = progress.add_task("loading strategies", total=len(groups_for(strategies)))
    for name in groups_for(strategies):
        gc.collect()
        rss_before, alloc_before = rss_bytes(), meter.start()
        group = load_group(name, ctx)
        for s in (s for s in strategies if CATALOGUE[s][0] == name):
            call = make_call(s, group)
            for k in range(max(1, len(group.adapters))):  # every adapter once: merged caches filled
                call(k, prime_batch)
        alloc_after = meter.start()
        if isinstance(group.model, MultiAdapterRuntime):
            # Priming activated each adapter a merged-path strategy serves, filling the merged cache.
            merged_path = any(s in ("runtime_single", "runtime_switch3") for s in strategies if CATALOGUE[s][0] == name)
            held = runtime_tensor_bytes(group.model, min(ctx.merged_cache_size, len(group.adapters)) if merged_path else 0)
        else:
            held = reachable_tensor_bytes(*group.modules)
        memory[name] = {
            "model_tensor_bytes": held,
            "cuda_resident_bytes": None if alloc_after is None or alloc_before is None else alloc_after - alloc_before,
            "rss_load_delta_bytes": rss_bytes() - rss_before,
        }
        groups[name] = group
        progress.advance(step)
    return groups, memory


def _forward_peaks(calls: dict[str, Call], batches: dict[int, list[Batch]], meter: PeakMeter) -> dict[str, dict[int, int | None]]:
    """Extra CUDA memory at the peak of one request, per strategy and batch size (None off CUDA)."""
    peaks: dict[str, dict[int, int | None]] = {s: {} for s in calls}
    for b, bs in batches.items():
        for s, call in calls.items():
            start = meter.start()
            call(0, bs[0])
            peaks[s][b] = meter.extra_since(start)
    return peaks


def _artifacts(prep: Prepared, cfg: BenchConfig, groups: dict[str, Group]) -> tuple[dict[str, AdapterBytes], FullModelBytes]:
    adapters: dict[str, AdapterBytes] = {
        a.name: {"weights_bytes": folder_bytes(a.folder, weights_only=True), "folder_bytes": folder_bytes(a.folder)}
        for a in prep.adapters
    }
    full: FullModelBytes
    if prep.full_model is not None:
        full = {"bytes": folder_bytes(prep.full_model, weights_only=True), "estimated": False}
    else:
        full_group = groups.get("full") or groups.get("merged")
        n = parameter_count(full_group.modules[0]) if full_group else None
        full = {"bytes": None if n is None else n * BYTES_PER_PARAM[cfg.dtype], "estimated": True}
    return adapters, full


def _assemble(
    cfg: BenchConfig, prep: Prepared, strategies: list[str], skipped: dict[str, str], batches: dict[int, list[Batch]], *,
    groups: dict[str, Group], memory: dict[str, LoadMemory], forward_peaks: dict[str, dict[int, int | None]],
    checks: list[CheckResult], times: Times, cuda_peak: int | None,
    endpoint: EndpointRun | None = None, endpoint_check: EndpointCheck | None = None,
) -> dict[str, Any]:
    """bench.json's contents: config, environment, inputs, per-strategy resources, results rows, checks
    (and, with an endpoint, its rows beside them and its ``endpoint`` section)."""
    adapter_bytes, full = _artifacts(prep, cfg, groups)
    check_by = {c.strategy: c.passed for c in checks}
    per_strategy: dict[str, StrategyInfo] = {}
    for s in strategies:
        group = groups[CATALOGUE[s][0]]
        if s in ("full_ft", "lora_merged"):
            artifact, estimated = full["bytes"], full["estimated"] or s == "lora_merged"
        else:
            artifact, estimated = sum(adapter_bytes[a]["weights_bytes"] for a in group.adapters), False
        per_strategy[s] = StrategyInfo(
            description=CATALOGUE[s][2] + (" (base model stand-in)" if s == "full_ft" and prep.full_model is None else ""),
            group=group.name, adapters=group.adapters, load_s=group.load_s,
            # Keyed by batch size as JSON keys are, so the record returned equals the one read back.
            memory=StrategyMemory(**memory[group.name], cuda_forward_peak_bytes={str(b): v for b, v in forward_peaks[s].items()}),
            artifact_bytes=artifact, artifact_estimated=estimated,
        )
    env = _environment(prep.device, cfg)
    requests = {b: request_stats(batches[b][cfg.warmup:]) for b in cfg.batch_sizes}
    overheads: dict[int, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    for b in cfg.batch_sizes:
        seq = requests[b]["mean_seq_len"]
        for s in strategies:
            row = {"strategy": s, "batch_size": b, **latency_summary(times[b][s], b, cfg.bootstrap_resamples, cfg.seed)}
            row.update(ratio_summary(times[b][s], times[b][BASELINE], cfg.bootstrap_resamples, cfg.seed,
                                       cfg.h2_max_ratio))
            info = per_strategy[s]
            row.update(
                mean_seq_len=seq, adapters_loaded=len(info.adapters), load_s=info.load_s,
                model_tensor_bytes=info.memory.model_tensor_bytes, cuda_resident_bytes=info.memory.cuda_resident_bytes,
                cuda_forward_peak_bytes=forward_peaks[s][b], rss_load_delta_bytes=info.memory.rss_load_delta_bytes,
                artifact_bytes=info.artifact_bytes, artifact_estimated=info.artifact_estimated, check_passed=check_by.get(s),
                synthetic_adapters=prep.synthetic, full_ft_stand_in=prep.full_model is None, device=env["device_name"],
                dtype=cfg.dtype, threads=env["threads"], description=info.description,
            )
            results.append(row)
        if endpoint is not None:
            assert endpoint_check is not None  # checked right after the endpoint was timed
            overheads[b] = overhead(times[b][endpoint.strategy], times[b][REFERENCE], cfg.bootstrap_resamples, cfg.seed)
            results += _endpoint_rows(cfg, prep, env, endpoint, b, times[b], overheads[b], endpoint_check.passed)
    bench: dict[str, Any] = {
        "config": config_to_dict(cfg),
        "environment": env,
        "base_model": {"name": prep.base.name, "source": prep.base.source, "is_decoder": prep.base.is_decoder,
                       "random_init": prep.base.random_init},
        "synthetic_adapters": prep.synthetic,
        "adapters": [
            {"name": a.name, "task": prep.tasks[a.name].name, "origin": a.origin, "label_names": a.label_names,
             "folder": str(Path(SYNTHETIC_FOLDER) / a.folder.name) if prep.synthetic else str(a.folder), **adapter_bytes[a.name]}
            for a in prep.adapters
        ],
        "full_ft": {"stand_in": prep.full_model is None, "folder": None if prep.full_model is None else str(prep.full_model),
                    "task": prep.full_info.get("task"), **full},
        "strategies": per_strategy,
        "skipped": skipped,
        "requests": {str(b): {"warmup": cfg.warmup, "measured": cfg.requests, **requests[b]} for b in cfg.batch_sizes},
        "results": results,
        "checks": [c.to_dict() for c in checks],
        "checks_passed": all(c.passed for c in checks),
        "memory": {"peak_rss_bytes": peak_rss_bytes(), "cuda_max_allocated_bytes": cuda_peak,
                   "note": "RSS is process-wide (all strategies share the process); per strategy see strategies.*.memory"},
        "notes": prep.notes + [f"{s} skipped: {why}" for s, why in skipped.items()],
        "provenance": provenance(cfg.seed),
    }
    if endpoint is not None:
        assert endpoint_check is not None
        bench["endpoint"] = endpoint.section(cfg, endpoint_check, overheads, times)
        bench["notes"].append(
            f"{endpoint.strategy} and {REFERENCE}: requests of one adapter each (the protocol names one model per "
            "request), built from the same dev rows as the other strategies' mixed batches; compare the two with "
            "each other (overhead_ratio), not with the merged model")
    return bench


def _endpoint_rows(cfg: BenchConfig, prep: Prepared, env: dict[str, Any], endpoint: EndpointRun, b: int,
                   times: dict[str, npt.NDArray[np.float64]], over: dict[str, Any], check_passed: bool) -> list[dict[str, Any]]:
    """The in-process counterpart's and the endpoint's result rows at batch size ``b``, in the results' shape.

    Their requests group rows by adapter, unlike the other strategies' batches, so no ratio to the
    merged model is given; the endpoint's row has its ratio to the in-process runtime instead.
    """
    seq = request_stats([r.batch for r in endpoint.requests[b][cfg.warmup:]])["mean_seq_len"]
    none = dict.fromkeys(("ratio_to_merged", "ratio_ci_low", "ratio_ci_high", "p50_ratio_to_merged", "h2",
                          "model_tensor_bytes", "cuda_resident_bytes", "cuda_forward_peak_bytes", "rss_load_delta_bytes",
                          "artifact_bytes", "artifact_estimated"))
    common = dict(mean_seq_len=seq, adapters_loaded=len(endpoint.served), synthetic_adapters=prep.synthetic,
                  full_ft_stand_in=prep.full_model is None, device=env["device_name"], dtype=cfg.dtype, threads=env["threads"])
    ref = {"strategy": REFERENCE, "batch_size": b, **latency_summary(times[REFERENCE], b, cfg.bootstrap_resamples, cfg.seed),
           **none, **common, "load_s": endpoint.reference_load_s, "check_passed": None, "description": REFERENCE_DESCRIPTION,
           **dict.fromkeys(("overhead_ratio", "overhead_ci_low", "overhead_ci_high", "p50_overhead_ratio", "added_ms"))}
    owner = endpoint.info.owned_by or "unknown server"
    ep = {"strategy": endpoint.strategy, "batch_size": b,
          **latency_summary(times[endpoint.strategy], b, cfg.bootstrap_resamples, cfg.seed), **none, **common,
          "load_s": None, "check_passed": check_passed,
          "description": f"HTTP endpoint {endpoint.url} ({owner}), client wall-clock, same requests as {REFERENCE}",
          **over}
    return [ref, ep]


def _environment(device: torch.device, cfg: BenchConfig) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"device": device.type, "device_name": name if device.type == "cuda" else f"CPU ({name})",
            "dtype": cfg.dtype, "threads": torch.get_num_threads(), "torch": torch.__version__}
