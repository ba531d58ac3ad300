"""Drift of fine-tuned models from their base, per layer and per run, with uncertainty.

Arrays in, numbers out (no model code, no files). Inputs are pooled states
``[n_layers + 1, n, d]`` for the base and for each fine-tuned run on the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats

from lorascope.similarity import layer_similarity
from lorascope.stats import hierarchical_interval, t_interval
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
    """

    method: str
    seed: int
    metric: float | None
    layers: list[dict]
    mean_drift: float
    mean_drift_ci: tuple[float, float]
    mean_drift_debiased: float
    mean_drift_debiased_ci: tuple[float, float]
    mean_cosine: float
    n_samples: int
    thirds: dict[str, float] = field(default_factory=dict)
    learning: dict | None = None
    mean_drift_boot: np.ndarray | None = field(default=None, repr=False)
    mean_drift_debiased_boot: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_boot")}


def depth_thirds(values: np.ndarray) -> dict[str, float]:
    """Mean of ``values [L]`` over the early, middle and late thirds of the layers."""
    parts = np.array_split(np.asarray(values, dtype=float), 3)
    return {name: float(p.mean()) for name, p in zip(("early", "middle", "late"), parts) if p.size}


def drift_of_run(base: np.ndarray, tuned: np.ndarray, *, method: str, seed: int, metric: float | None,
              n_resamples: int = 1000, boot_seed: int = 0, learning: dict | None = None) -> RunDrift:
    """Per-layer and layer-averaged drift of ``tuned`` from ``base`` (both ``[L, n, d]``)."""
    sim = layer_similarity(base, tuned, n_resamples=n_resamples, seed=boot_seed)
    drift, drift_db = 1.0 - sim.cka, 1.0 - sim.cka_debiased
    rows = []
    for i in range(drift.size):
        lo, hi = _interval(1.0 - sim.cka_boot[i], drift[i]) if sim.cka_boot is not None else (np.nan, np.nan)
        rows.append({
            "layer": i,
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
        mean_drift_boot=boot, mean_drift_debiased_boot=boot_db,
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


def seed_noise_floor(runs: list[RunDrift], confidence: float = 0.95) -> dict | None:
    """The seed-to-seed spread of drift-from-base within one method: the noise floor.

    A difference between methods smaller than this spread could come from the training seed
    alone. It is the sd over seeds of each run's layer-averaged drift from the base, with a
    chi-square interval for the sd (normal theory; wide for a few seeds, and it says so).

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


def between_seed_drift(states: dict[int, np.ndarray]) -> dict | None:
    """Drift between two runs of one method that differ only in seed (``states``: seed -> ``[L, n, d]``).

    Not a noise floor for drift-from-base: two runs that each moved d from the base can be about
    2d apart. Kept as a separately named description of how differently seeds move the model.
    """
    if len(states) < 2:
        return None
    pairs = []
    for (s1, a), (s2, b) in combinations(sorted(states.items()), 2):
        sim = layer_similarity(a, b)
        pairs.append({"seeds": [s1, s2], "mean_drift": float(np.mean(1 - sim.cka)),
                      "mean_drift_debiased": float(np.mean(1 - sim.cka_debiased))})
    return {"pairs": pairs, "mean_drift": float(np.mean([p["mean_drift"] for p in pairs])),
            "mean_drift_debiased": float(np.mean([p["mean_drift_debiased"] for p in pairs]))}


def summarise_method(runs: list[RunDrift], confidence: float = 0.95) -> dict:
    """Mean ± sd over seeds of the layer-averaged drift, cosine and task metric, with intervals.

    Each drift mean carries two intervals: ``ci_seeds`` (Student t over the per-seed values: what
    another set of seeds would give on these samples) and ``ci_seeds_samples`` (the hierarchical
    bootstrap over seeds and samples, :func:`lorascope.stats.hierarchical_interval`).
    """
    def ms(values: list[float]) -> dict:
        v = np.asarray([x for x in values if x is not None], dtype=float)
        if v.size == 0:
            return {"mean": None, "sd": None, "n": 0}
        return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else None, "n": int(v.size)}

    def with_intervals(values: list[float], boots: list[np.ndarray | None]) -> dict:
        out = ms(values)
        if len(values) < 2:
            return out
        out["ci_seeds"] = list(t_interval(values, confidence=confidence))
        reps = np.stack(boots) if all(b is not None for b in boots) else None
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


def _bounds(ci) -> list[float | None]:
    return [json_number(ci.low), json_number(ci.high)]


def reduction_percent(drift_lora: float, drift_full: float) -> float | None:
    """Δ% = 100 · (drift_full − drift_lora) / drift_full (the protocol's definition)."""
    if drift_full is None or drift_lora is None or drift_full == 0:
        return None
    return 100.0 * (drift_full - drift_lora) / drift_full
