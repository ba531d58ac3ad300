"""LoRA vs full fine-tuning on one task: paired tests across seeds, per task and per layer.

With n seeds, an exact sign-flip test cannot go below 2^(1−n) (0.25 for n = 3), so every test
is reported with n and its smallest attainable p, beside the protocol's paired t-test. Uncertainty
over *samples* comes from the per-run bootstrap (``RunDrift.mean_drift_ci``); over seeds and
samples together from the hierarchical bootstrap. The drift reduction is analysed on the log scale
(per-seed ratios LoRA / full); the task metric's difference includes the dev set's sampling error
when the runs store per-example predictions. The verdicts of the declared hypotheses are one family
with those of the study's other tasks (:mod:`lorascope.stats.family`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from lorascope.drift.analysis import RunDrift, gm_reduction_percent, noise_caveat, reduction_percent
from lorascope.errors import LorascopeError
from lorascope.metrics import format_metric, metric_name, versus_majority
from lorascope.stats import (
    HypothesisFamily,
    apply_family,
    cohens_d_paired,
    correct,
    crossed_difference,
    h1a_verdict,
    h1b_verdict,
    hierarchical_interval,
    hierarchical_log_ratio_interval,
    log_ratio_summary,
    paired_t_test,
    sign_flip_test,
    t_interval,
)
from lorascope.stats.family import HYPOTHESES
from lorascope.stats.hypotheses import TestName
from lorascope.stats.logratio import positive, reduction_from_log
from lorascope.stats.result import json_number
from lorascope.stats.verdict import Verdict
from lorascope.train.learned import LEARNED_MARGIN, at_majority_level


class _CommonArgs(TypedDict):
    """The keyword arguments every verdict of one comparison shares."""

    alpha: float
    test: TestName
    seed: int


def _safe(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run a statistic; record why it is undefined instead of failing the whole analysis."""
    try:
        result = fn(*args, **kwargs)
    except LorascopeError as exc:
        return {"error": str(exc)}
    out: dict[str, Any] = result.to_dict() if hasattr(result, "to_dict") else {"value": result}
    return out


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
    family: HypothesisFamily | None = None,
) -> dict[str, Any]:
    """Paired comparison of the two methods' runs (paired by seed).

    Returns a JSON-ready dict: paired seeds, per-seed drifts; Δ% = 100 · (1 − geometric mean of
    the per-seed ratios LoRA / full) with the log-ratio summary (t interval, t-test and exact
    sign-flip test on the log ratios) and a seeds-and-samples interval (hierarchical bootstrap,
    percentile on the log scale); the t-test and exact sign-flip test on per-seed drift differences
    (full − LoRA, two-sided), Cohen's d, a t interval of the mean difference; the noise caveat;
    the task metric's difference over seeds and, given per-example predictions, over seeds and
    dev examples; per-layer t-tests with Holm correction over layers; and the verdicts of the
    declared hypotheses (default: H1a, H1b, H1b debiased, "LoRA drifts less" and its debiased
    form), Holm-adjusted together and Bonferroni over ``n_tasks`` until the study adjusts all
    tasks together (``family`` says which).
    """
    family = family or HypothesisFamily()
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
    of_means = reduction_percent(float(dl.mean()), float(df.mean()))
    of_means_db = reduction_percent(float(dl_db.mean()), float(df_db.mean()))
    gm, gm_db = gm_reduction_percent(dl, df), gm_reduction_percent(dl_db, df_db)
    out.update({
        "drift_lora": dl.tolist(),
        "drift_full": df.tolist(),
        "drift_debiased_lora": dl_db.tolist(),
        "drift_debiased_full": df_db.tolist(),
        # Δ% on the log scale where every drift is positive; the ratio of means otherwise (and beside it).
        "reduction_percent": of_means if gm is None else gm,
        "reduction_percent_debiased": of_means_db if gm_db is None else gm_db,
        "reduction_scale": "ratio of mean drifts" if gm is None else "geometric mean of per-seed ratios",
        "reduction_scale_debiased": "ratio of mean drifts" if gm_db is None else "geometric mean of per-seed ratios",
        "reduction_percent_of_means": of_means,
        "reduction_percent_of_means_debiased": of_means_db,
        "paired_t": _safe(paired_t_test, deltas),
        "sign_flip": _safe(sign_flip_test, deltas, seed=seed),
        "cohens_d": _safe(cohens_d_paired, deltas).get("value"),
        "mean_delta_ci_t": _mean_delta_interval(deltas),
        "per_layer": _per_layer_tests(pl, pf, alpha),
    })
    if len(seeds) < 2:
        out["note"] = f"n = {len(seeds)} seed pair: no test across seeds is possible; only sample-level intervals apply"
        return out
    out["log_ratio"] = _safe(log_ratio_summary, dl, df, seed=seed)
    out["log_ratio_debiased"] = _safe(log_ratio_summary, dl_db, df_db, seed=seed)
    out["reduction_ci_seeds_samples"] = _reduction_interval(pl, pf, "mean_drift", seed)
    out["reduction_ci_seeds_samples_debiased"] = _reduction_interval(pl, pf, "mean_drift_debiased", seed)
    out["noise_caveat"] = noise_caveat(dl, df)
    ml = [r.metric for r in pl]
    mf = [r.metric for r in pf]
    examples, examples_note = _dev_examples(pl, pf)
    if all(m is not None for m in ml + mf):
        out["metric_difference"] = _metric_difference(np.array(ml), np.array(mf), examples, examples_note)
    common: _CommonArgs = {"alpha": alpha, "test": test, "seed": seed}
    tests: dict[str, Callable[[], Verdict]] = {
        "h1b": lambda: h1b_verdict(dl, df, min_reduction=min_reduction, **common),
        "h1b_debiased": lambda: h1b_verdict(dl_db, df_db, min_reduction=min_reduction, hypothesis=HYPOTHESES["h1b_debiased"],
                                            **common),
        "lower": lambda: h1b_verdict(dl, df, min_reduction=0.0, hypothesis=HYPOTHESES["lower"], **common),
        "lower_debiased": lambda: h1b_verdict(dl_db, df_db, min_reduction=0.0, hypothesis=HYPOTHESES["lower_debiased"],
                                              **common),
    }
    if all(m is not None for m in ml + mf):
        lora_ex, full_ex = examples if examples is not None else (None, None)
        tests["h1a"] = lambda: h1a_verdict(np.array(ml), np.array(mf), margin=margin, lora_examples=lora_ex,
                                           full_examples=full_ex, **common)
    computed: dict[str, Verdict | None] = {}
    errors: dict[str, str] = {}
    for key in family.hypotheses:
        try:
            computed[key] = tests[key]() if key in tests else None
        except LorascopeError as exc:
            computed[key] = None
            errors[key] = str(exc)
        if key not in tests:
            errors[key] = "no task metric for every run: H1a cannot be tested"
    decided = apply_family(
        computed, alpha=alpha, correction=family.correction, n_blocks=n_tasks, primary=list(family.primary),
        note=(f"Holm over this task's {len(computed)} declared verdicts, Bonferroni over {n_tasks} tasks: the study "
              "adjusts all tasks together" if n_tasks > 1 else f"every verdict of the study ({len(computed)} on one task)"),
    )
    out["verdicts"] = {key: decided[key].to_dict() if key in decided else {"error": errors[key]} for key in family.hypotheses}
    out["family"] = {"method": family.correction if len(computed) * n_tasks > 1 else "none",
                     "size": len(computed) * n_tasks, "hypotheses": list(family.hypotheses),
                     "primary": list(family.primary), "n_tasks": n_tasks, "alpha": alpha, "complete": n_tasks == 1}
    out.update(learning_caveats(pl, pf))
    if out.get("not_interpretable"):
        out["verdicts"] = {key: {"error": out["not_interpretable"], "not_interpretable": True} for key in out["verdicts"]}
    return out


def _dev_examples(lora: list[RunDrift], full: list[RunDrift]) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """Per-example correctness [k, n_dev] of both methods' runs, or None with the reason."""
    runs = lora + full
    if not all(r.dev_correct is not None for r in runs):
        return None, ("the runs store no per-example dev predictions: metric comparisons treat the dev examples as "
                      "fixed (seeds only)")
    lengths = {int(np.asarray(r.dev_correct).shape[0]) for r in runs}
    if len(lengths) != 1:
        return None, f"the runs' per-example predictions cover different dev sets (sizes {sorted(lengths)}): seeds only"
    grid = np.array([np.asarray(r.dev_correct, dtype=float) for r in runs])
    metrics = np.array([np.nan if r.metric is None else r.metric for r in runs])
    if not np.allclose(grid.mean(axis=1), metrics, rtol=0.0, atol=1e-6):
        return None, ("the runs' per-example predictions do not reproduce their dev metric (another checkpoint, or a "
                      "main metric the predictions do not give): seeds only")
    return (grid[: len(lora)], grid[len(lora):]), ""


def _metric_difference(ml: np.ndarray, mf: np.ndarray, examples: tuple[np.ndarray, np.ndarray] | None,
                       note: str, confidence: float = 0.95) -> dict[str, Any]:
    """Mean LoRA − full task metric with a t interval over seeds and, given per-example scores, over seeds and dev examples."""
    low, high = t_interval(ml - mf, confidence=confidence)
    out: dict[str, Any] = {
        "estimate": float((ml - mf).mean()),
        "seeds_only": {"low": low, "high": high, "confidence": confidence, "method": "t over seed pairs (dev set fixed)",
                       "n": int(ml.size), "test": _safe(paired_t_test, ml - mf)},
        "seeds_and_examples": None, "note": note,
    }
    if examples is not None:
        crossed = crossed_difference(*examples)
        out["seeds_and_examples"] = {**crossed.to_dict(confidence), "test": crossed.test().to_dict()}
    return out


def learning_caveats(lora: list[RunDrift], full: list[RunDrift]) -> dict[str, Any]:
    """Whether the runs learned enough for their drift to mean anything.

    Drift between classifiers that learned nothing measures noise around untrained heads, so the
    comparison is *not interpretable* when a run predicts one label for every dev example, or
    when a method's mean main metric is not ``LEARNED_MARGIN`` above the majority baseline (the
    report's † rule; the reason says below it by how much, or above it by less than the margin, on
    the metric's own scale). A single seed at majority level among learning ones is listed, not fatal.
    """
    out: dict[str, Any] = {}
    runs = [r for r in lora + full if r.learning]
    weak = [f"{r.method} seed {r.seed}" for r in runs if r.learning is not None and not r.learning.get("learned", True)]
    if weak:
        out["runs_not_learned"] = weak
    reasons = [f"{r.method} seed {r.seed} predicts one label for every dev example" for r in runs
               if r.learning is not None and (r.learning.get("predicted_share") or 0) >= 1.0]
    for name, group in (("LoRA", lora), ("full fine-tuning", full)):
        pairs = [(r.metric, r.learning.get("majority_baseline")) for r in group if r.learning]
        pairs = [(m, b) for m, b in pairs if m is not None and b is not None]
        if pairs:
            value, majority = float(np.mean([m for m, _ in pairs])), float(np.mean([b for _, b in pairs]))
            # The main metric's name (older records lack it: written as a share, as they were).
            metric = next((r.learning.get("metric") for r in group if r.learning and r.learning.get("metric")), None)
            if at_majority_level(value, majority):
                reasons.append(f"{name}'s mean dev {metric_name(metric)} {format_metric(metric, value)} is "
                               f"{versus_majority(metric, value, majority, LEARNED_MARGIN)}")
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
    """Δ% with the hierarchical bootstrap over seeds and samples (None bounds: undefined).

    On the log scale when every drift is positive: percentile interval of the mean log ratio,
    carried to Δ% = 100 · (1 − exp(·)), asymmetric where the data are. Otherwise the ratio of mean
    drifts, as before, and ``scale`` says so.
    """
    boots = [getattr(r, field + "_boot") for r in lora + full]
    est = [np.array([getattr(r, field) for r in lora]), np.array([getattr(r, field) for r in full])]
    reps = None
    if all(b is not None for b in boots):
        reps = [np.stack(boots[: len(lora)]), np.stack(boots[len(lora):])]
    if positive(*est):
        try:
            ci = hierarchical_log_ratio_interval(est[0], est[1], *(reps or (None, None)), seed=seed)
        except LorascopeError as exc:
            return {"error": str(exc)}
        return {**reduction_from_log(ci).to_dict(), "scale": "geometric mean of per-seed ratios",
                "mean_log_ratio": ci.estimate, "mean_log_ratio_ci": [json_number(ci.low), json_number(ci.high)]}

    def pct(lo: npt.NDArray[np.float64], fu: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return 100.0 * (fu - lo) / fu

    return {**_safe(hierarchical_interval, est, reps, pct, seed=seed), "scale": "ratio of mean drifts"}


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
    # An undefined test (no spread at a layer) cannot reject; counting it as p = 1 keeps every layer in the
    # family, as the verdicts' family does, instead of dropping the whole correction. A layer rejects when its
    # adjusted p reaches α, the rule the verdicts use (statsmodels' own flag can differ by a rounding step).
    defined = [p is not None and bool(np.isfinite(p)) for p in pvals]
    corr = correct(np.array([p if ok else 1.0 for p, ok in zip(pvals, defined)]), method="holm", alpha=alpha)
    for row, ok, p_adj in zip(tests, defined, corr.p_adjusted):
        row["p_holm"] = float(p_adj) if ok else None
        row["reject_holm"] = bool(ok and p_adj <= alpha)
    return {"test": "paired t-test per layer, Holm over layers", "alpha": alpha, "layers": tests}
