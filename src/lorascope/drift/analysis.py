"""Drift of fine-tuned models from their base, per layer and per run, with uncertainty.

Arrays in, numbers out (no model code, no files). Inputs are pooled states
``[n_layers + 1, n, d]`` for the base and for each fine-tuned run on the same samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from lorascope.similarity import layer_similarity
from lorascope.stats import hierarchical_interval, t_interval
from lorascope.stats.bootstrap import ConfidenceInterval
from lorascope.stats.result import json_number


@dataclass
class RunDrift:
    """Drift of one fine-tuned run from the base.

    Attributes:
        layers: per-layer rows (layer, cka, cka_debiased, cosine, drift, drift_debiased,
            ci_low, ci_high — a 95% bootstrap-over-samples interval of the drift, centred on
            the estimate; see ``_interval``).
        mean_drift: drift averaged over layers (biased CKA), with ``mean_drift_ci`` from the
            same resamples (all layers resampled together).
        learning: the run's learning check from its ``metrics.json`` (``learned``, ``reasons``,
            ``majority_baseline``, ``predicted_share``), None when it has none.
        mean_drift_boot, mean_drift_debiased_boot: float arrays [B], the layer-averaged drift of
            every bootstrap-over-samples replicate (for the hierarchical interval across seeds;
            not written to JSON).
        dev_correct: float array [n_dev] of 0/1, whether the run classified each dev example
            correctly (same examples in the same order for every run), None when the run stores no
            per-example predictions; gives metric comparisons their dev-set sampling error (not
            written to JSON).
    """

    method: str
    seed: int
    metric: float | None
    layers: list[dict[str, Any]]
    mean_drift: float
    mean_drift_ci: tuple[float, float]
    mean_drift_debiased: float
    mean_drift_debiased_ci: tuple[float, float]
    mean_cosine: float
    n_samples: int
    thirds: dict[str, float] = field(default_factory=dict)
    learning: dict[str, Any] | None = None
    mean_drift_boot: npt.NDArray[np.float64] | None = field(default=None, repr=False)
    mean_drift_debiased_boot: npt.NDArray[np.float64] | None = field(default=None, repr=False)
    dev_correct: npt.NDArray[np.float64] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_boot") and k != "dev_correct"}


def depth_thirds(values: np.ndarray) -> dict[str, float]:
    """Mean of ``values [L]`` over the early, middle and late thirds of the layers."""
    parts = np.array_split(np.asarray(values, dtype=float), 3)
    return {name: float(p.mean()) for name, p in zip(("early", "middle", "late"), parts) if p.size}


def drift_of_run(base: np.ndarray, tuned: np.ndarray, *, method: str, seed: int, metric: float | None,
              n_resamples: int = 1000, boot_seed: int = 0, learning: dict[str, Any] | None = None,
              dev_correct: npt.NDArray[np.float64] | None = None, first_layer: int = 0) -> RunDrift:
    """Per-layer and layer-averaged drift of ``tuned`` from ``base`` (both ``[L, n, d]``); ``dev_correct``
    (float [n_dev] of 0/1, or None) is kept on the result for the metric comparisons. ``first_layer``
    numbers the rows when the states start past layer 0 (the embedding output left out)."""
    sim = layer_similarity(base, tuned, n_resamples=n_resamples, seed=boot_seed)
    drift, drift_db = 1.0 - sim.cka, 1.0 - sim.cka_debiased
    rows = []
    for i in range(drift.size):
        lo, hi = _interval(1.0 - sim.cka_boot[i], drift[i]) if sim.cka_boot is not None else (np.nan, np.nan)
        rows.append({
            "layer": i + first_layer,
            "cka": float(sim.cka[i]),
            "cka_debiased": float(sim.cka_debiased[i]),
            "cosine": float(sim.cosine[i]) if sim.cosine is not None else None,
            "drift": float(drift[i]),
            "drift_debiased": float(drift_db[i]),
            "ci_low": lo,
            "ci_high": hi,
        })
    none = (np.nan, np.nan)
    boot = 1.0 - sim.cka_boot.mean(0) if sim.cka_boot is not None else None
    boot_db = 1.0 - sim.cka_debiased_boot.mean(0) if sim.cka_debiased_boot is not None else None
    mean_ci = _interval(boot, float(drift.mean())) if boot is not None else none
    mean_db_ci = _interval(boot_db, float(drift_db.mean())) if boot_db is not None else none
    return RunDrift(
        method=method, seed=seed, metric=metric, layers=rows,
        mean_drift=float(drift.mean()), mean_drift_ci=mean_ci,
        mean_drift_debiased=float(drift_db.mean()), mean_drift_debiased_ci=mean_db_ci,
        mean_cosine=float(np.mean(sim.cosine)) if sim.cosine is not None else float("nan"),
        n_samples=sim.n_samples, thirds=depth_thirds(drift), learning=learning,
        mean_drift_boot=boot, mean_drift_debiased_boot=boot_db, dev_correct=dev_correct,
    )


def _interval(samples: np.ndarray, estimate: float, confidence: float = 0.95) -> tuple[float, float]:
    """The bootstrap replicates' spread, centred on the estimate.

    Resampling rows with replacement duplicates samples, and duplicates inflate biased CKA: with
    d > n its replicates sit about 0.08 above the estimate while spreading only about 0.003, so a
    plain percentile interval would not even contain the estimate. Centring keeps the spread
    (the sampling uncertainty) without importing that artefact. For debiased CKA (ties excluded)
    the shift is below 1e-4 and centring changes nothing material.

    A replicate can be undefined (debiased CKA of a resample with very few distinct samples is
    0/0); such replicates are left out rather than turning the whole interval into NaN.
    """
    finite = np.asarray(samples, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size < 2:
        return (np.nan, np.nan)
    a = (1 - confidence) / 2
    lo, hi = np.quantile(finite, [a, 1 - a])
    shift = estimate - float(np.mean(finite))
    return float(lo + shift), float(hi + shift)


def seed_noise_floor(runs: list[RunDrift], confidence: float = 0.95) -> dict[str, Any] | None:
    """The seed-to-seed spread of drift-from-base within one method: the noise floor.

    It is the sd over seeds of each run's layer-averaged drift from the base, with a chi-square
    interval for the sd (normal theory; wide for a few seeds, and it says so). It describes how far
    one run can land from another; it is not the yardstick for a difference of *mean* drifts
    between methods, which shrinks with the number of seed pairs and with their pairing: that is
    :func:`noise_caveat`'s question.

    Args:
        runs: the runs of one method (one per seed).
        confidence: coverage of the interval for the sd.

    Returns:
        dict with ``sd`` and ``sd_ci`` for biased and debiased drift and ``n``; None below 2 seeds.
    """
    if len(runs) < 2:
        return None
    k = len(runs)
    chi = stats.chi2.ppf([0.5 + confidence / 2, 0.5 - confidence / 2], k - 1)

    def spread(values: list[float]) -> tuple[float, list[float]]:
        sd = float(np.std(values, ddof=1))
        return sd, [float(sd * np.sqrt((k - 1) / c)) for c in chi]

    sd, ci = spread([r.mean_drift for r in runs])
    sd_db, ci_db = spread([r.mean_drift_debiased for r in runs])
    return {"n": k, "sd": sd, "sd_ci": ci, "sd_debiased": sd_db, "sd_debiased_ci": ci_db,
            "confidence": confidence, "what": "sd over seeds of drift from the base (chi-square interval)"}


def between_seed_drift(states: dict[int, np.ndarray]) -> dict[str, Any] | None:
    """Drift between two runs of one method that differ only in seed (``states``: seed -> ``[L, n, d]``).

    Not a noise floor for drift-from-base: two runs that each moved d from the base can be about
    2d apart. Kept as a separately named description of how differently seeds move the model.
    """
    if len(states) < 2:
        return None
    pairs: list[dict[str, Any]] = []
    for (s1, a), (s2, b) in combinations(sorted(states.items()), 2):
        sim = layer_similarity(a, b)
        pairs.append({"seeds": [s1, s2], "mean_drift": float(np.mean(1 - sim.cka)),
                      "mean_drift_debiased": float(np.mean(1 - sim.cka_debiased))})
    return {"pairs": pairs, "mean_drift": float(np.mean([p["mean_drift"] for p in pairs])),
            "mean_drift_debiased": float(np.mean([p["mean_drift_debiased"] for p in pairs]))}


def summarise_method(runs: list[RunDrift], confidence: float = 0.95) -> dict[str, Any]:
    """Mean ± sd over seeds of the layer-averaged drift, cosine and task metric, with intervals.

    Each drift mean carries two intervals: ``ci_seeds`` (Student t over the per-seed values: what
    another set of seeds would give on these samples) and ``ci_seeds_samples`` (the hierarchical
    bootstrap over seeds and samples, :func:`lorascope.stats.hierarchical_interval`).
    """
    def ms(values: Sequence[float | None]) -> dict[str, Any]:
        v = np.asarray([x for x in values if x is not None], dtype=float)
        if v.size == 0:
            return {"mean": None, "sd": None, "n": 0}
        return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else None, "n": int(v.size)}

    def with_intervals(values: list[float], boots: list[npt.NDArray[np.float64] | None]) -> dict[str, Any]:
        out = ms(values)
        if len(values) < 2:
            return out
        out["ci_seeds"] = list(t_interval(values, confidence=confidence))
        present = [b for b in boots if b is not None]
        reps = np.stack(present) if len(present) == len(boots) else None
        out["ci_seeds_samples"] = _bounds(hierarchical_interval([values], None if reps is None else [reps],
                                                                confidence=confidence))
        return out

    return {
        "seeds": [r.seed for r in runs],
        "drift": with_intervals([r.mean_drift for r in runs], [r.mean_drift_boot for r in runs]),
        "drift_debiased": with_intervals([r.mean_drift_debiased for r in runs], [r.mean_drift_debiased_boot for r in runs]),
        "cosine": ms([r.mean_cosine for r in runs]),
        "metric": ms([r.metric for r in runs]),
        "layer_drift_mean": np.mean([[row["drift"] for row in r.layers] for r in runs], axis=0).tolist(),
        "layer_drift_sd": (np.std([[row["drift"] for row in r.layers] for r in runs], axis=0, ddof=1).tolist()
                           if len(runs) > 1 else None),
        "thirds": {k: float(np.mean([r.thirds[k] for r in runs])) for k in runs[0].thirds},
    }


def _bounds(ci: ConfidenceInterval) -> list[float | None]:
    return [json_number(ci.low), json_number(ci.high)]


def reduction_percent(drift_lora: float, drift_full: float) -> float | None:
    """100 · (drift_full − drift_lora) / drift_full of two (mean) drifts: the reduction as a ratio of means."""
    if drift_full is None or drift_lora is None or drift_full == 0:
        return None
    return 100.0 * (drift_full - drift_lora) / drift_full


def gm_reduction_percent(drift_lora: np.ndarray, drift_full: np.ndarray) -> float | None:
    """Δ% = 100 · (1 − geometric mean over seeds of drift_lora_i / drift_full_i) (arrays [k], paired by seed).

    None when a drift is ≤ 0: there is no logarithm (use :func:`reduction_percent` of the means).
    """
    lora, full = np.asarray(drift_lora, dtype=float), np.asarray(drift_full, dtype=float)
    if lora.size == 0 or lora.shape != full.shape or not (np.all(lora > 0) and np.all(full > 0)):
        return None
    return float(100.0 * (1.0 - np.exp(np.mean(np.log(lora) - np.log(full)))))


def noise_caveat(drift_lora: np.ndarray, drift_full: np.ndarray, confidence: float = 0.95) -> dict[str, Any] | None:
    """Could the drift difference between the methods be seed noise? Yes when the paired interval includes no difference.

    The question is about the *mean* over the k seed pairs, so it is answered with the spread of
    the paired differences and k (not with one seed's sd, which ignores both): on the log scale
    (drifts > 0), the Student t interval over seed pairs of mean log(LoRA / full), read as the
    geometric-mean ratio, includes 1; otherwise the t interval of mean(full − LoRA) includes 0. A
    descriptive caveat: the interval is not corrected for the study's family.

    Args:
        drift_lora: float array [k], LoRA's layer-averaged drift per seed.
        drift_full: float array [k], full fine-tuning's, paired by seed.
        confidence: coverage of the interval.

    Returns:
        dict with ``applies``, ``scale``, ``estimate``, ``ci``, ``no_difference`` (the value the
        interval is checked against), ``n``, ``confidence``, ``method`` and ``text``; None below 2 pairs.
    """
    lora, full = np.asarray(drift_lora, dtype=float), np.asarray(drift_full, dtype=float)
    k = int(lora.size)
    if k < 2:
        return None
    if np.all(lora > 0) and np.all(full > 0):
        r = np.log(lora) - np.log(full)
        low, high = t_interval(r, confidence=confidence)
        est, ci, null = float(np.exp(r.mean())), [float(np.exp(low)), float(np.exp(high))], 1.0
        scale, what = "geometric-mean ratio LoRA / full", "the geometric-mean drift ratio LoRA / full"
    else:
        d = full - lora
        low, high = t_interval(d, confidence=confidence)
        est, ci, null = float(d.mean()), [float(low), float(high)], 0.0
        scale, what = "mean difference full − LoRA", "the mean drift difference full − LoRA"
    applies = bool(ci[0] <= null <= ci[1])
    reading = ("includes" if applies else "excludes") + f" {null:g}: " + (
        "the training seed alone could produce this difference" if applies else "the difference is larger than the seed "
        "noise of its mean")
    text = (f"{what} is {est:.3g} with a {confidence:.0%} t interval over {k} seed pairs of {ci[0]:.3g} to {ci[1]:.3g}, "
            f"which {reading} (uncorrected)")
    return {"applies": applies, "scale": scale, "estimate": est, "ci": ci, "no_difference": null, "n": k,
            "confidence": confidence, "method": "Student t over seed pairs" + (" of per-seed log ratios" if null == 1.0 else ""),
            "text": text}
