"""Per-run measures of a lens compared across methods: mean ± sd per method, and full − LoRA over seed pairs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from lorascope.stats.paired import paired_t_test
from lorascope.stats.permutation import sign_flip_test
from lorascope.stats.result import json_number
from lorascope.variants import FULL, compared_labels, primary_label


def compare_methods(runs: list[dict[str, Any]], measures: tuple[str, ...], lora: str = "lora",
                    full: str = FULL) -> dict[str, Any]:
    """Each measure's mean and sd over the runs of ``lora`` and of ``full``; over seed pairs,
    full − ``lora`` with a paired t-test and the exact sign-flip test (two-sided, null: no difference).

    Args:
        runs: ``[{"method", "seed", "summary": {measure: float}}]`` (``method``: the run's label).
        measures: the summary keys to compare.
        lora: the label compared with ``full`` (``lora`` or a variant such as ``lora_r64``).
        full: the full fine-tuning label it is compared with (a sweep's chosen point, e.g. ``full_lr0p0001``).

    Returns:
        ``{"seeds": [paired seeds], "measures": {measure: {lora_mean, lora_sd, lora_n, full_mean, full_sd,
        full_n, paired_t, sign_flip}}}``, ``lora_*`` being ``lora``'s (the tests only with at least 2 pairs).
    """
    by = {(r["method"], r["seed"]): r["summary"] for r in runs}
    seeds = sorted(s for m, s in by if m == lora and (full, s) in by)
    out: dict[str, Any] = {"seeds": seeds, "measures": {}}
    for measure in measures:
        entry: dict[str, Any] = {}
        for key, label in (("lora", lora), ("full", full)):
            values = [v[measure] for (m, _), v in by.items() if m == label]
            entry[f"{key}_n"] = len(values)
            entry[f"{key}_mean"] = float(np.mean(values)) if values else None
            entry[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        if len(seeds) >= 2:
            deltas = np.array([by[(full, s)][measure] - by[(lora, s)][measure] for s in seeds], dtype=float)
            entry["paired_t"] = {k: json_number(v) for k, v in asdict(paired_t_test(deltas)).items()}
            entry["sign_flip"] = {k: json_number(v) for k, v in asdict(sign_flip_test(deltas)).items()}
        out["measures"][measure] = entry
    return out


def compare_variants(runs: list[dict[str, Any]], measures: tuple[str, ...], methods: dict[str, str],
                     runs_for: dict[str, list[dict[str, Any]]] | None = None,
                     pair: list[str] | None = None) -> dict[str, Any]:
    """:func:`compare_methods` for the primary label (top level, as before variants existed), and
    for every label compared with ``full`` under ``variants``.

    Args:
        methods: label -> its method (``lora`` or ``full``).
        runs_for: per label, the runs to compare it on, where they differ from ``runs`` (the
            weight lens measures full fine-tuning on each variant's own matrices).
        pair: (LoRA label, full FT label) to compare instead, e.g. the points a sweep's rule chose.

    Returns:
        ``{"primary": label, "reference": full FT label, "seeds", "measures", "variants": {label:
        {"seeds", "measures"}}}``.
    """
    if pair:
        lora, full = pair
        missing = [label for label in pair if label not in methods]
        if missing:
            from lorascope.errors import DataError

            raise DataError(f"no finished run of '{missing[0]}', one of the compared pair {pair}")
        top = compare_methods((runs_for or {}).get(lora, runs), measures, lora, full)
        return {"primary": lora, "reference": full, **top, "variants": {lora: top}}
    primary = primary_label(methods) or "lora"
    variants = {label: compare_methods((runs_for or {}).get(label, runs), measures, label)
                for label in compared_labels(methods)}
    top = variants.get(primary) or compare_methods(runs, measures, primary)
    return {"primary": primary, "reference": FULL, **top, "variants": variants}
