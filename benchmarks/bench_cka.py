"""Time lorascope's CKA against a plain numpy reference on one TinyLlama-shaped model pair.

Shape: 23 layers × n = 750 samples × d = 2048 features, float32, as mean-pooled hidden states of
TinyLlama-1.1B on a 750-example evaluation set. Y is a noisy low-rank-perturbed copy of X with the
noise growing with depth, so CKA moves across layers instead of sitting at 0 or 1.

Times, as the median (and best) of a few runs after a warm-up:
  (a) reference: float64 numpy, naive feature-space biased CKA per layer (d×d products);
  (b) lorascope: biased + debiased CKA + mean cosine for all layers;
  (c) lorascope: (b) plus a 1,000-resample bootstrap over samples for every layer;
(b) and (c) both with float64 Gram products (the default) and with float32 ones.
Then checks the targets: (b) ≤ 1 s, (c) ≤ 15 s, peak memory ≤ 2 GB.

Run: .venv/bin/python benchmarks/bench_cka.py [--repeats 5] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from lorascope.similarity import layer_similarity

N_LAYERS, N_SAMPLES, DIM = 23, 750, 2048
TARGET_B_S, TARGET_C_S, TARGET_MEM_GB = 1.0, 15.0, 2.0


def make_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Base and fine-tuned stand-ins.

    Returns:
        (x, y): float32 arrays [L, n, d]; y_l = x_l (I + U Vᵀ) + noise_l, U, V rank 32.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_LAYERS, N_SAMPLES, DIM), dtype=np.float32)
    y = np.empty_like(x)
    for i in range(N_LAYERS):
        u = rng.standard_normal((DIM, 32), dtype=np.float32) / np.sqrt(DIM)
        v = rng.standard_normal((32, DIM), dtype=np.float32) / np.float32(2 * np.sqrt(32))
        noise = rng.standard_normal((N_SAMPLES, DIM), dtype=np.float32)
        y[i] = x[i] + (x[i] @ u) @ v + (0.2 + 1.5 * i / N_LAYERS) * noise
    return x, y


def reference_cka(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Biased linear CKA per layer, the textbook way: float64, centred, d×d feature products."""
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        a = x[i].astype(np.float64)
        b = y[i].astype(np.float64)
        a -= a.mean(axis=0)
        b -= b.mean(axis=0)
        out[i] = np.linalg.norm(a.T @ b) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))
    return out


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Median and best wall time of ``repeats`` runs after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), result


def traced_peak_mb(fn: Callable[[], object]) -> float:
    """Peak bytes allocated (numpy buffers included) while fn runs, in MB."""
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def cpu_pressure() -> float | None:
    """Share of the last 10 s in which some runnable task waited for a CPU (Linux PSI), in %.

    Unlike the load average it reacts within seconds, so it tells whether other processes
    competed with this benchmark while it ran.
    """
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()

    print(f"shape: {N_LAYERS} layers x n={N_SAMPLES} x d={DIM} float32, cores: {os.cpu_count()}")
    load_before, pressure_before = os.getloadavg()[0], cpu_pressure()
    x, y = make_pair()
    rss_data_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    run_a = lambda: reference_cka(x, y)  # noqa: E731
    phases = {
        "b": ("(b) biased + debiased CKA + cosine", dict()),
        "b32": ("(b) same, float32 Gram products", dict(gram_precision="float32")),
        "c": (f"(c) (b) + {args.resamples}-resample bootstrap", dict(n_resamples=args.resamples)),
        "c32": ("(c) same, float32 Gram products", dict(n_resamples=args.resamples, gram_precision="float32")),
    }
    t_a, best_a, ref = timed(run_a, args.repeats)
    times, best, results, peaks = {}, {}, {}, {}
    for key, (_, kwargs) in phases.items():
        run = lambda kwargs=kwargs: layer_similarity(x, y, seed=0, **kwargs)  # noqa: E731
        times[key], best[key], results[key] = timed(run, args.repeats)
        peaks[key] = traced_peak_mb(run)
    rss_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    res = results["b"]
    print(f"CKA over layers: {res.cka.min():.3f} .. {res.cka.max():.3f}; "
          f"debiased {res.cka_debiased.min():.3f} .. {res.cka_debiased.max():.3f}; "
          f"cosine {res.cosine.min():.3f} .. {res.cosine.max():.3f}")
    err = max(float(np.max(np.abs(results[k].cka - ref))) for k in ("b", "c"))
    print(f"max |lorascope float64 - reference| biased CKA: {err:.1e}")
    err32 = max(
        float(np.max(np.abs(getattr(results[k + "32"], f) - getattr(results[k], f))))
        for k, f in (("b", "cka"), ("b", "cka_debiased"), ("c", "cka_boot"), ("c", "cka_debiased_boot"))
    )
    print(f"max |float32 Gram - float64| over CKA, debiased CKA and bootstrap replicates: {err32:.1e}")
    rc = results["c"]
    shift = np.median(rc.cka_boot.mean(axis=1) - rc.cka)
    shift_d = np.median(rc.cka_debiased_boot.mean(axis=1) - rc.cka_debiased)
    print(f"bootstrap: {rc.cka_boot.shape[1]} resamples/layer; median over layers of replicate sd "
          f"{np.median(rc.cka_boot.std(axis=1)):.4f} (biased), {np.median(rc.cka_debiased_boot.std(axis=1)):.4f} "
          f"(debiased); replicate mean - estimate {shift:+.4f} (biased), {shift_d:+.4f} (debiased)")
    print()
    print(f"{'phase (23 layers)':<48}{'median s':>10}{'best s':>8}{'speed-up vs (a)':>17}{'traced peak MB':>16}")
    print(f"{'(a) numpy float64 feature-space CKA (reference)':<48}{t_a:>10.3f}{best_a:>8.3f}{1.0:>16.2f}x")
    for key, (label, _) in phases.items():
        print(f"{label:<48}{times[key]:>10.3f}{best[key]:>8.3f}{t_a / times[key]:>16.2f}x{peaks[key]:>16.0f}")
    print()
    print(f"memory: input pair {(x.nbytes + y.nbytes) / 2**20:.0f} MB; process RSS peak after making the data "
          f"{rss_data_mb:.0f} MB, overall {rss_peak_mb:.0f} MB")
    # Other processes competing for the two cores inflate every time above; PSI says so directly
    # (this script's own threads fit the cores and add little), the load average only with a lag.
    pressure_after = cpu_pressure()
    if pressure_before is None or pressure_after is None:
        busy = load_before > 0.5
        print(f"1-min load average at start: {load_before:.2f}")
    else:
        busy = max(pressure_before, pressure_after) > 5.0
        print(f"CPU pressure (PSI some avg10) at start / end: {pressure_before:.1f}% / {pressure_after:.1f}%; "
              f"1-min load average at start {load_before:.2f}")
    if busy:
        print("other processes were competing for the CPU: the times are upper bounds")
    checks = [
        (f"(b) float64 <= {TARGET_B_S:g} s", times["b"] <= TARGET_B_S, f"{times['b']:.3f} s"),
        (f"(b) float32 Gram <= {TARGET_B_S:g} s", times["b32"] <= TARGET_B_S, f"{times['b32']:.3f} s"),
        (f"(c) float64 <= {TARGET_C_S:g} s", times["c"] <= TARGET_C_S, f"{times['c']:.3f} s"),
        (f"(c) float32 Gram <= {TARGET_C_S:g} s", times["c32"] <= TARGET_C_S, f"{times['c32']:.3f} s"),
        (f"peak RSS <= {TARGET_MEM_GB:g} GB", rss_peak_mb / 1024 <= TARGET_MEM_GB, f"{rss_peak_mb / 1024:.2f} GB"),
        ("float64 agrees with reference to 1e-10", err <= 1e-10, f"{err:.1e}"),
        ("float32 Gram within 1e-6 of float64", err32 <= 1e-6, f"{err32:.1e}"),
    ]
    for name, ok, value in checks:
        print(f"target {name:<40} {'PASS' if ok else 'FAIL'}  ({value})")


if __name__ == "__main__":
    main()
