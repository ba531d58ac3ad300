"""Effect size for paired data."""

from __future__ import annotations

from typing import Any

from lorascope.stats._arrays import as_sample, is_constant, unit_scaled


def cohens_d_paired(deltas: Any) -> float:
    """Cohen's d for paired data (often called d_z): mean of the differences over their sd.

    Args:
        deltas: float array [n], paired differences a_i − b_i, n ≥ 2.

    Returns:
        mean(deltas) / std(deltas, ddof=1); NaN when the differences have zero variance (d would
        be ±inf or 0/0, neither a useful effect size).

    Raises:
        LorascopeError: n < 2 or NaN/inf.
    """
    d = as_sample(deltas, "deltas", min_n=2)
    if is_constant(d):
        return float("nan")
    d = unit_scaled(d)[0]  # scale-free: rescaled, tiny or huge differences neither under- nor overflow
    return float(d.mean() / d.std(ddof=1))
