"""How many seeds a paired comparison needs: power of the paired t-test, floor of the exact test.

From the observed per-seed differences (mean m, sd s; effect size d_z = m / s), the number of
seed pairs n at which a one-sided paired t-test at the corrected alpha has the requested power
(statsmodels' noncentral-t power). This plans the next study from the current one; it is not a
post-hoc justification of the current result. The exact sign-flip test additionally needs
2^-n ≤ alpha before any outcome can be significant.
"""

from __future__ import annotations

from typing import Any

from statsmodels.stats.power import TTestPower

from lorascope.stats._arrays import as_sample, is_constant
from lorascope.stats.permutation import min_attainable_p

MAX_SEEDS = 100_000


def exact_floor_pairs(corrected_alpha: float, alternative: str = "greater") -> int:
    """Fewest non-zero pairs whose sign-flip floor is at or below ``corrected_alpha``."""
    k = 1
    while min_attainable_p(k, alternative) > corrected_alpha:
        k += 1
    return k


def _t_power(effect: float, n: int, alpha: float) -> float:
    return float(TTestPower().power(effect_size=effect, nobs=n, alpha=alpha, alternative="larger"))


def seeds_needed(deltas: Any, corrected_alpha: float, power: float = 0.8) -> dict[str, Any]:
    """Seed pairs for ``power`` in a one-sided paired t-test of mean(deltas) > 0.

    Args:
        deltas: float array [n], per-seed differences oriented so that the claim is mean > 0
            (e.g. (1 − min_reduction) · drift_full − drift_lora).
        corrected_alpha: the per-test level.
        power: target power in (0, 1).

    Returns:
        dict with ``t`` (seed pairs for the t-test, or None when the observed effect is ≤ 0 or has
        zero spread, or above ``MAX_SEEDS``), ``exact_floor`` (pairs the exact test needs to be
        able to reach alpha at all), ``effect_size_dz``, ``power`` and a ``note``.
    """
    d = as_sample(deltas, "deltas", min_n=2)
    out: dict[str, Any] = {"t": None, "exact_floor": exact_floor_pairs(corrected_alpha), "power": power,
                           "effect_size_dz": None, "note": ""}
    mean = float(d.mean())
    if is_constant(d):
        out["note"] = "the differences have zero spread: power cannot be estimated from them"
        return out
    effect = mean / float(d.std(ddof=1))
    out["effect_size_dz"] = effect
    if effect <= 0:
        out["note"] = "the observed effect points away from the claim: no number of seeds gives power for it"
        return out
    if _t_power(effect, MAX_SEEDS, corrected_alpha) < power:
        out["note"] = f"more than {MAX_SEEDS} seed pairs would be needed"
        return out
    low, high = 2, MAX_SEEDS  # power grows with n: bisect for the smallest n reaching it
    while low < high:
        mid = (low + high) // 2
        if _t_power(effect, mid, corrected_alpha) >= power:
            high = mid
        else:
            low = mid + 1
    out["t"] = int(low)
    return out


def seeds_needed_text(info: dict[str, Any] | None) -> str:
    """e.g. "7 (t); exact test needs ≥ 5", or the reason there is no number."""
    if not info:
        return "–"
    if info.get("t") is None:
        return info.get("note") or "–"
    return f"{info['t']} (paired t, {info['power']:.0%} power); exact test needs ≥ {info['exact_floor']}"
