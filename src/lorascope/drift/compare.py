"""LoRA vs full fine-tuning on one task: paired tests across seeds, per task and per layer.

With n seeds, an exact sign-flip test cannot go below 2^(1−n) (0.25 for n = 3), so every test
is reported with n and its smallest attainable p, beside the protocol's paired t-test. Uncertainty
over *samples* comes from the per-run bootstrap (``RunDrift.mean_drift_ci``); over seeds and
samples together from the hierarchical bootstrap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.checks.learned import LEARNED_MARGIN, at_majority_level
from lorascope.drift.analysis import RunDrift, reduction_percent
from lorascope.errors import LorascopeError
from lorascope.stats import (
    cohens_d_paired,
    correct,
    h1a_verdict,
    h1b_verdict,
    hierarchical_interval,
    paired_t_test,
    sign_flip_test,
    t_interval,
)
from lorascope.stats.hypotheses import TestName


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
    test: TestName = "t",
    seed: int = 0,
) -> dict[str, Any]:
    """Paired comparison of the two methods' runs (paired by seed).

    Returns a JSON-ready dict: paired seeds, per-seed drifts, Δ% with a seed-only (Fieller, t)
    and a seeds-and-samples (hierarchical bootstrap) interval, the t-test and exact sign-flip
    test on per-seed drift differences (full − LoRA, two-sided), Cohen's d, a t interval of the
    mean difference, per-layer t-tests with Holm correction over layers, and the verdicts: H1a
    (non-inferiority of the task metric), H1b on biased and on debiased drift, and the plain
    direction "LoRA drifts less" on both, each with alpha split over ``n_tasks`` (Bonferroni).
    """
    by_seed_l = {r.seed: r for r in lora}
    by_seed_f = {r.seed: r for r in full}
    seeds = sorted(set(by_seed_l) & set(by_seed_f))
    out: dict[str, Any] = {"paired_seeds": seeds, "n_pairs": len(seeds), "primary_test": test}
    if not seeds:
        out["note"] = "no seed has both a LoRA and a full fine-tuning run: nothing to compare"
        return out
    pl, pf = [by_seed_l[s] for s in seeds], [by_seed_f[s] for s in seeds]
    dl = np.array([r.mean_drift for r in pl])
    df = np.array([r.mean_drift for r in pf])
    dl_db = np.array([r.mean_drift_debiased for r in pl])
    df_db = np.array([r.mean_drift_debiased for r in pf])
    deltas = df - dl
    out.update({
        "drift_lora": dl.tolist(),
        "drift_full": df.tolist(),
        "drift_debiased_lora": dl_db.tolist(),
        "drift_debiased_full": df_db.tolist(),
        "reduction_percent": reduction_percent(float(dl.mean()), float(df.mean())),
        "reduction_percent_debiased": reduction_percent(float(dl_db.mean()), float(df_db.mean())),
        "paired_t": _safe(paired_t_test, deltas),
        "sign_flip": _safe(sign_flip_test, deltas, seed=seed),
        "cohens_d": _safe(cohens_d_paired, deltas).get("value"),
        "mean_delta_ci_t": _mean_delta_interval(deltas),
        "per_layer": _per_layer_tests(pl, pf, alpha),
    })
    if len(seeds) < 2:
        out["note"] = f"n = {len(seeds)} seed pair: no test across seeds is possible; only sample-level intervals apply"
        return out
    out["reduction_ci_seeds_samples"] = _reduction_interval(pl, pf, "mean_drift", seed)
    out["reduction_ci_seeds_samples_debiased"] = _reduction_interval(pl, pf, "mean_drift_debiased", seed)
    ml = [r.metric for r in pl]
    mf = [r.metric for r in pf]
    common = dict(alpha=alpha, n_comparisons=n_tasks, test=test, seed=seed)
    verdicts: dict[str, Any] = {}
    if all(m is not None for m in ml + mf):
        verdicts["h1a"] = _safe(h1a_verdict, np.array(ml), np.array(mf), margin=margin, **common)
    verdicts["h1b"] = _safe(h1b_verdict, dl, df, min_reduction=min_reduction, **common)
    verdicts["h1b_debiased"] = _safe(h1b_verdict, dl_db, df_db, min_reduction=min_reduction,
                                     hypothesis="H1b (debiased)", **common)
    verdicts["lower"] = _safe(h1b_verdict, dl, df, min_reduction=0.0, hypothesis="LoRA drifts less", **common)
    verdicts["lower_debiased"] = _safe(h1b_verdict, dl_db, df_db, min_reduction=0.0,
                                       hypothesis="LoRA drifts less (debiased)", **common)
    out["verdicts"] = verdicts
    out.update(learning_caveats(pl, pf))
    if out.get("not_interpretable"):
        out["verdicts"] = {key: {"error": out["not_interpretable"], "not_interpretable": True} for key in verdicts}
    return out


def learning_caveats(lora: list[RunDrift], full: list[RunDrift]) -> dict[str, Any]:
    """Whether the runs learned enough for their drift to mean anything.

    Drift between classifiers that learned nothing measures noise around untrained heads, so the
    comparison is *not interpretable* when a run predicts one label for every dev example, or
    when a method's mean main metric is not ``LEARNED_MARGIN`` above the majority baseline (the
    report's † rule). A single seed at majority level among learning ones is listed, not fatal.
    """
    out: dict[str, Any] = {}
    runs = [r for r in lora + full if r.learning]
    weak = [f"{r.method} seed {r.seed}" for r in runs if not r.learning.get("learned", True)]
    if weak:
        out["runs_not_learned"] = weak
    reasons = [f"{r.method} seed {r.seed} predicts one label for every dev example" for r in runs
               if (r.learning.get("predicted_share") or 0) >= 1.0]
    for name, group in (("LoRA", lora), ("full fine-tuning", full)):
        pairs = [(r.metric, r.learning.get("majority_baseline")) for r in group if r.learning]
        pairs = [(m, b) for m, b in pairs if m is not None and b is not None]
        if pairs:
            metric, majority = float(np.mean([m for m, _ in pairs])), float(np.mean([b for _, b in pairs]))
            if at_majority_level(metric, majority):
                reasons.append(f"{name}'s mean dev metric {100 * metric:.1f}% is not {100 * LEARNED_MARGIN:.0f} points "
                               f"above the majority baseline ({100 * majority:.1f}%)")
    if reasons:
        out["not_interpretable"] = ("not interpretable: the models did not learn the task (" + "; ".join(reasons)
                                    + "; see learning_check in each run's metrics.json)")
    return out


def _mean_delta_interval(deltas: np.ndarray) -> dict[str, Any]:
    """Student t 95% interval of the mean per-seed drift difference (full − LoRA)."""
    if deltas.size < 2:
        return {"error": "one seed pair: no interval across seeds"}
    low, high = t_interval(deltas)
    return {"low": low, "high": high, "method": "t", "n": int(deltas.size)}


def _reduction_interval(lora: list[RunDrift], full: list[RunDrift], field: str, seed: int) -> dict[str, Any]:
    """Δ% with the hierarchical bootstrap over seeds and samples (None bounds: undefined)."""
    boots = [getattr(r, field + "_boot") for r in lora + full]
    reps = None
    if all(b is not None for b in boots):
        reps = [np.stack(boots[: len(lora)]), np.stack(boots[len(lora):])]

    def pct(lo: np.ndarray, fu: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return 100.0 * (fu - lo) / fu

    est = [np.array([getattr(r, field) for r in lora]), np.array([getattr(r, field) for r in full])]
    return _safe(hierarchical_interval, est, reps, pct, seed=seed)


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
    return {"test": "paired t-test per layer, Holm over layers", "alpha": alpha, "layers": tests}
