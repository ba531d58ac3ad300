"""A sweep's frontier from the drift of its runs: the table, the comparison at matched accuracy and
the method x setting interaction (``lorascope.stats.frontier``), keyed for ``drift.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lorascope.drift.analysis import RunDrift
from lorascope.stats.frontier import SweepPoint, frontier_table, matched_accuracy, setting_interaction


def sweep_frontier(runs: Sequence[RunDrift], points: dict[str, dict[str, Any]], *, seeds: Sequence[int] | None = None,
                   n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The frontier of one task's sweep.

    Args:
        runs: every run's drift (``method`` is its label, ``metric`` its dev metric).
        points: label -> {"method": lora | full, "setting": the swept value that orders the point}.
        seeds: the seeds every point was trained with (a study's ``sweep_seeds``): the frontier uses
            only these, so the point the selection chose, trained with more, weighs as much as the others.
        n_resamples: bootstrap resamples of the matched-accuracy comparison.

    Returns:
        {"table": one row per point, "matched": the matched-accuracy comparison, "interaction": the
        method x setting test}; a point without finished runs is left out and named in ``missing``.
    """
    swept = []
    missing = []
    for label, spec in points.items():
        own = [r for r in runs if r.method == label and r.metric is not None and (seeds is None or r.seed in seeds)]
        if not own:
            missing.append(label)
            continue
        swept.append(SweepPoint(label=label, method=str(spec["method"]), setting=float(spec["setting"]),
                                metric=np.array([float(r.metric or 0.0) for r in own]),
                                drift=np.array([r.mean_drift for r in own])))
    out: dict[str, Any] = {"table": frontier_table(swept), "missing": missing,
                           **({"seeds": sorted(seeds)} if seeds is not None else {})}
    kinds = {p.method for p in swept}
    if {"lora", "full"} <= kinds:
        out["matched"] = matched_accuracy(swept, n_resamples=n_resamples, seed=seed)
        out["interaction"] = setting_interaction(swept)
    return out
