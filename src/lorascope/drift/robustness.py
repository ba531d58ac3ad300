"""RQ1 under other ways of measuring drift: whether "LoRA drifts less than full fine-tuning" holds
when the similarity measure or the layers averaged change.

The verdicts use linear CKA averaged over the layers the study declares (``drift.layers``). A
reviewer's first questions are whether the answer is an artefact of that measure — CKA is dominated
by the directions of largest variance — or of the embedding layer, where LoRA on attention
matrices drifts by exactly zero and pulls its average down. Each alternative here is computed on
the same samples and runs and summarised as the verdict's drift is: per run the layer mean, per
method pair the geometric-mean ratio over seeds with its t interval and the exact sign-flip test.
They are descriptive: their p-values are not part of the verdicts' corrected family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.similarity import linear_cka, procrustes_distance, rbf_cka
from lorascope.similarity.mutual_knn import mutual_knn
from lorascope.stats.logratio import log_ratio_summary

MUTUAL_KNN_K = 10
RBF_SIGMA_FRAC = 0.8

# measure -> (what the report calls it, dissimilarity of one layer's [n, d] states, layers it averages).
# "verdict" layers are those the verdicts average (drift.layers); the CKA rows swap the embedding layer.
MEASURES: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], float], str]] = {
    "cka_all_layers": ("linear CKA, every layer (embedding output included)",
                       lambda x, y: 1.0 - linear_cka(x, y), "all"),
    "cka_blocks": ("linear CKA, transformer blocks only (embedding output left out)",
                   lambda x, y: 1.0 - linear_cka(x, y), "blocks"),
    "procrustes": ("orthogonal Procrustes distance (Ding et al., 2021)", procrustes_distance, "verdict"),
    "rbf_cka": (f"RBF-kernel CKA (width {RBF_SIGMA_FRAC} × median distance)",
                lambda x, y: 1.0 - rbf_cka(x, y, sigma_frac=RBF_SIGMA_FRAC), "verdict"),
    "mutual_knn": (f"mutual {MUTUAL_KNN_K}-nearest neighbours (Huh et al., 2024)",
                   lambda x, y: 1.0 - mutual_knn(x, y, k=MUTUAL_KNN_K), "verdict"),
}


def layer_range(layers: str, n_layers: int) -> range:
    """The layer indices averaged: ``all`` of them, or the ``blocks`` (index 0, the embedding output, left out)."""
    if layers not in ("all", "blocks"):
        raise LorascopeError(f"drift.layers: expected all or blocks, got {layers!r}")
    return range(0 if layers == "all" else 1, n_layers)


def run_dissimilarities(base: np.ndarray, tuned: np.ndarray, verdict_layers: str) -> dict[str, float]:
    """Each measure's layer-averaged dissimilarity of one run from the base.

    Args:
        base, tuned: float arrays [L, n, d], layer 0 the embedding output.
        verdict_layers: the layers the verdicts average (``all`` or ``blocks``).

    Returns:
        measure -> mean over its layers of (1 − similarity), or the distance (0 = unchanged).
    """
    if base.shape[1] <= MUTUAL_KNN_K:  # bad settings, said in their terms rather than the measure's
        raise LorascopeError(f"drift: {base.shape[1]} samples are too few for the robustness measures (mutual "
                             f"{MUTUAL_KNN_K}-nearest neighbours need more than {MUTUAL_KNN_K}); raise n_samples "
                             "or set robustness=false")
    out = {}
    for name, (_, dissimilarity, layers) in MEASURES.items():
        chosen = layer_range(verdict_layers if layers == "verdict" else layers, base.shape[0])
        values = [dissimilarity(base[i].astype(np.float64), tuned[i].astype(np.float64)) for i in chosen]
        out[name] = float(np.mean(values))
    return out


def robustness_rows(values: Sequence[dict[str, Any]], lora: str, full: str, verdict_layers: str) -> list[dict[str, Any]]:
    """One row per measure: LoRA and full FT means over seeds and their paired comparison.

    Args:
        values: per run ``{"method": label, "seed": int, "measures": {measure: float}}``.
        lora, full: the labels the verdicts compare.
        verdict_layers: the layers the verdicts average (names the row that is the verdicts' own measure).

    Returns:
        ``[{"measure", "description", "layers", "is_verdict_measure", "lora_mean", "full_mean", "n_pairs",
        "ratio": the log-ratio summary (geometric-mean ratio LoRA/full, interval, tests) or None,
        "direction": "lora_less" | "lora_more" | "tie" | None, "note"}]``.
    """
    by = {(v["method"], int(v["seed"])): v["measures"] for v in values}
    seeds = sorted(s for (m, s) in by if m == lora and (full, s) in by)
    rows = []
    for name, (description, _, layers) in MEASURES.items():
        used = verdict_layers if layers == "verdict" else layers
        a = np.array([by[(lora, s)][name] for s in seeds], dtype=float)
        b = np.array([by[(full, s)][name] for s in seeds], dtype=float)
        row: dict[str, Any] = {"measure": name, "description": description, "layers": used,
                               "is_verdict_measure": name == f"cka_{'all_layers' if verdict_layers == 'all' else 'blocks'}",
                               "lora_mean": float(a.mean()) if a.size else None,
                               "full_mean": float(b.mean()) if b.size else None, "n_pairs": len(seeds),
                               "ratio": None, "direction": None, "note": ""}
        if len(seeds) < 2:
            row["note"] = f"{len(seeds)} seed pair(s): no comparison"
        elif (a <= 0).any() or (b <= 0).any():
            row["note"] = "a run is identical to the base by this measure: no ratio"
        else:
            summary = log_ratio_summary(a, b).to_dict()
            row["ratio"] = summary
            ratio = summary["gm_ratio"]
            row["direction"] = "tie" if ratio == 1.0 else "lora_less" if ratio < 1.0 else "lora_more"
        rows.append(row)
    return rows
