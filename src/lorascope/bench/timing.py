"""Interleaved latency measurement and its summary statistics.

Strategies are timed round-robin: step ``k`` runs every strategy once on the same batch, in an
order rotated by ``k``, so slow drift of a shared machine (other jobs, thermal state, frequency
scaling) hits every strategy alike instead of whichever happened to run last. Because steps pair
the strategies up, a strategy's latency ratio to the baseline gets a *paired* bootstrap interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lorascope.stats.bootstrap import bootstrap_ci

# H2 of the protocol: serving separate or multiple adapters adds at most 30% latency.


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer brackets the whole request (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    calls: Mapping[str, Callable[[int], object]],
    warmup: int,
    measured: int,
    device: torch.device,
    on_step: Callable[[], None] | None = None,
) -> dict[str, npt.NDArray[np.float64]]:
    """Run ``warmup + measured`` round-robin steps and return each strategy's measured latencies.

    Args:
        calls: Strategy -> ``f(step)`` serving request ``step``.
        warmup: Unrecorded steps first (caches, allocator pools, lazy initialisation).
        measured: Recorded steps.
        device: Synchronised around every call.
        on_step: Called after every step (progress display).

    Returns:
        Strategy -> milliseconds per request, shape [measured], in step order.
    """
    names = list(calls)
    times = {name: np.empty(measured) for name in names}
    for step in range(warmup + measured):
        shift = step % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            calls[name](step)
            synchronize(device)
            elapsed = time.perf_counter() - start
            if step >= warmup:
                times[name][step - warmup] = elapsed * 1e3
        if on_step is not None:
            on_step()
    return times


def _median(x: npt.NDArray[np.float64], axis: int = -1) -> npt.NDArray[np.float64]:
    return np.asarray(np.median(x, axis=axis))


def _ratio_of_means(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], axis: int = -1) -> npt.NDArray[np.float64]:
    return np.asarray(np.mean(a, axis=axis) / np.mean(b, axis=axis))


def latency_summary(ms: npt.NDArray[np.float64], rows: int, resamples: int, seed: int) -> dict[str, Any]:
    """Mean, percentiles, bootstrap intervals and throughput of one strategy at one batch size.

    Args:
        ms: Milliseconds per request, shape [n].
        rows: Rows per request (the batch size).
        resamples: Bootstrap resamples.
        seed: Bootstrap seed.
        h2_max_ratio: H2's largest acceptable ratio.

    Returns:
        JSON-ready dict; ``ci_*`` is the 95% BCa interval of the mean, ``p50_ci_*`` the percentile
        interval of the median; ``throughput_rps`` is rows served per second of request time.
    """
    mean_ci = bootstrap_ci(ms, n_resamples=resamples, seed=seed)
    p50_ci = bootstrap_ci(ms, statistic=_median, method="percentile", n_resamples=resamples, seed=seed)
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "n": int(ms.size),
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std(ddof=1)),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "ci_low_ms": mean_ci.low,
        "ci_high_ms": mean_ci.high,
        "p50_ci_low_ms": p50_ci.low,
        "p50_ci_high_ms": p50_ci.high,
        "throughput_rps": rows * ms.size / (ms.sum() / 1e3),
    }


def ratio_summary(ms: npt.NDArray[np.float64], baseline_ms: npt.NDArray[np.float64], resamples: int, seed: int,
                  h2_max_ratio: float = 1.30) -> dict[str, Any]:
    """Latency of a strategy relative to the baseline measured in the same steps.

    Args:
        ms: The strategy's milliseconds per request, shape [n].
        baseline_ms: The baseline's, shape [n], paired by step.
        resamples: Bootstrap resamples.
        seed: Bootstrap seed.
        h2_max_ratio: H2's largest acceptable ratio.

    Returns:
        ``ratio_to_merged`` (ratio of means) with a paired 95% BCa interval, ``p50_ratio_to_merged``
        (ratio of medians), and the H2 verdict ``h2``: ``supported`` when the interval lies at or
        below ``h2_max_ratio``, ``rejected`` when above it, ``inconclusive`` when it straddles it.
    """
    r = paired_ratio(ms, baseline_ms, resamples, seed)
    if r["ci_high"] <= h2_max_ratio:
        verdict = "supported"
    elif r["ci_low"] > h2_max_ratio:
        verdict = "rejected"
    else:
        verdict = "inconclusive"
    return {
        "ratio_to_merged": r["ratio"],
        "ratio_ci_low": r["ci_low"],
        "ratio_ci_high": r["ci_high"],
        "p50_ratio_to_merged": r["p50_ratio"],
        "h2": verdict,
    }


def paired_ratio(ms: npt.NDArray[np.float64], baseline_ms: npt.NDArray[np.float64], resamples: int, seed: int) -> dict[str, float]:
    """Ratio of mean latencies of two strategies timed in the same steps, with its paired interval.

    Args:
        ms: Milliseconds per request, shape [n].
        baseline_ms: The denominator's, shape [n], paired by step.
        resamples: Bootstrap resamples.
        seed: Bootstrap seed.

    Returns:
        ``ratio`` (of means), ``ci_low``/``ci_high`` (paired 95% BCa interval: steps are resampled
        together, so drift that hits both cancels), ``p50_ratio`` (ratio of medians).
    """
    ci = bootstrap_ci(ms, baseline_ms, statistic=_ratio_of_means, n_resamples=resamples, seed=seed)
    return {"ratio": float(ms.mean() / baseline_ms.mean()), "ci_low": ci.low, "ci_high": ci.high,
            "p50_ratio": float(np.median(ms) / np.median(baseline_ms))}
