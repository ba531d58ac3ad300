"""Per-run measures of a lens compared across methods: mean ± sd per method, and full − LoRA over seed pairs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from lorascope.stats.paired import paired_t_test
from lorascope.stats.permutation import sign_flip_test
from lorascope.stats.result import json_number


def compare_methods(runs: list[dict[str, Any]], measures: tuple[str, ...]) -> dict[str, Any]:
    """Each measure's mean and sd over every run of each method; over seed pairs, full − LoRA with a
    paired t-test and the exact sign-flip test (two-sided, null: no difference).

    Args:
        runs: ``[{"method", "seed", "summary": {measure: float}}]``.
        measures: the summary keys to compare.

    Returns:
        ``{"seeds": [paired seeds], "measures": {measure: {lora_mean, lora_sd, lora_n, full_mean, full_sd,
        full_n, paired_t, sign_flip}}}`` (the tests only with at least 2 pairs).
    """
    by = {(r["method"], r["seed"]): r["summary"] for r in runs}
    seeds = sorted(s for m, s in by if m == "lora" and ("full", s) in by)
    out: dict[str, Any] = {"seeds": seeds, "measures": {}}
    for measure in measures:
        entry: dict[str, Any] = {}
        for method in ("lora", "full"):
            values = [v[measure] for (m, _), v in by.items() if m == method]
            entry[f"{method}_n"] = len(values)
            entry[f"{method}_mean"] = float(np.mean(values)) if values else None
            entry[f"{method}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        if len(seeds) >= 2:
            deltas = np.array([by[("full", s)][measure] - by[("lora", s)][measure] for s in seeds], dtype=float)
            entry["paired_t"] = {k: json_number(v) for k, v in asdict(paired_t_test(deltas)).items()}
            entry["sign_flip"] = {k: json_number(v) for k, v in asdict(sign_flip_test(deltas)).items()}
        out["measures"][measure] = entry
    return out
