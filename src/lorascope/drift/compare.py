"""LoRA vs full fine-tuning on one task: paired tests across seeds, per task and per layer.

With n seeds, an exact sign-flip test cannot go below 2^(1−n) (0.25 for n = 3), so every test
is reported with n and its smallest attainable p, and a verdict says "underpowered" when even a
perfect result could not reach the corrected alpha. Uncertainty over *samples* comes from the
per-run bootstrap intervals (``RunDrift.mean_drift_ci``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.drift.analysis import RunDrift, reduction_percent
from lorascope.errors import LorascopeError
from lorascope.stats import (
    bootstrap_ci,
    cohens_d_paired,
    correct,
    h1a_verdict,
    h1b_verdict,
    paired_t_test,
    sign_flip_test,
)


def _safe(fn, *args, **kwargs) -> dict[str, Any]:
    """Run a statistic; record why it is undefined instead of failing the whole analysis."""
    try:
        result = fn(*args, **kwargs)
    except LorascopeError as exc:
        return {"error": str(exc)}
    return result.to_dict() if hasattr(result, "to_dict") else {"value": result}


def compare_methods(
    lora: list[RunDrift],
    full: list[RunDrift],
    *,
    n_tasks: int = 1,
    alpha: float = 0.05,
    margin: float = 0.03,
    min_reduction: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired comparison of the two methods' runs (paired by seed).

    Returns a JSON-ready dict: paired seeds, mean drifts, Δ%, the t-test and exact sign-flip
    test on per-seed drift differences (full − LoRA), Cohen's d, a bootstrap interval, per-layer
    t-tests with Holm correction over layers, and the H1a / H1b verdicts with alpha split over
    ``n_tasks`` (Bonferroni).
    """
    by_seed_l = {r.seed: r for r in lora}
    by_seed_f = {r.seed: r for r in full}
    seeds = sorted(set(by_seed_l) & set(by_seed_f))
    out: dict[str, Any] = {"paired_seeds": seeds, "n_pairs": len(seeds)}
    if not seeds:
        out["note"] = "no seed has both a LoRA and a full fine-tuning run: nothing to compare"
        return out
    dl = np.array([by_seed_l[s].mean_drift for s in seeds])
    df = np.array([by_seed_f[s].mean_drift for s in seeds])
    deltas = df - dl
    out.update({
        "drift_lora": dl.tolist(),
        "drift_full": df.tolist(),
        "reduction_percent": reduction_percent(float(dl.mean()), float(df.mean())),
        "paired_t": _safe(paired_t_test, deltas),
        "sign_flip": _safe(sign_flip_test, deltas, seed=seed),
        "cohens_d": _safe(cohens_d_paired, deltas).get("value"),
        "bootstrap_mean_delta": _safe(bootstrap_ci, deltas, seed=seed),
        "per_layer": _per_layer_tests([by_seed_l[s] for s in seeds], [by_seed_f[s] for s in seeds], alpha),
    })
    if len(seeds) < 2:
        out["note"] = f"n = {len(seeds)} seed pair: no test across seeds is possible; only sample-level intervals apply"
    ml = [by_seed_l[s].metric for s in seeds]
    mf = [by_seed_f[s].metric for s in seeds]
    if all(m is not None for m in ml + mf):
        out["h1a"] = _safe(h1a_verdict, np.array(ml), np.array(mf), margin=margin, alpha=alpha, n_comparisons=n_tasks, seed=seed)
    out["h1b"] = _safe(h1b_verdict, dl, df, min_reduction=min_reduction, alpha=alpha, n_comparisons=n_tasks, seed=seed)
    return out


def _per_layer_tests(lora: list[RunDrift], full: list[RunDrift], alpha: float) -> dict[str, Any]:
    """Paired t-test of full − LoRA drift at every layer, Holm-corrected over layers."""
    n_layers = len(lora[0].layers)
    if len(lora) < 2:
        return {"note": "fewer than 2 seed pairs: per-layer tests skipped"}
    tests, pvals = [], []
    for i in range(n_layers):
        deltas = np.array([f.layers[i]["drift"] - l.layers[i]["drift"] for l, f in zip(lora, full)])
        t = _safe(paired_t_test, deltas)
        tests.append({"layer": i, "mean_delta": float(deltas.mean()), **t})
        pvals.append(t.get("p_value"))
    finite = [p for p in pvals if p is not None and np.isfinite(p)]
    if len(finite) == len(pvals):
        corr = correct(np.array(pvals), method="holm", alpha=alpha)
        for row, p_adj, rej in zip(tests, corr.p_adjusted, corr.reject):
            row["p_holm"] = float(p_adj)
            row["reject_holm"] = bool(rej)
    return {"test": "paired t-test per layer, Holm over layers", "layers": tests}
