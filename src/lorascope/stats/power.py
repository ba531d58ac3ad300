"""How many seeds a paired comparison needs: power of the paired t-test, floor of the exact test.

From the observed per-seed differences (mean m, sd s; effect size d_z = m / s), the number of
seed pairs n at which a one-sided paired t-test at the corrected alpha has the requested power
(the noncentral-t power of statsmodels' ``TTestPower``, from scipy). With a few seeds d_z itself is
very uncertain, so the number is given as a range: the seeds needed at the upper and at the lower
end of the confidence interval for d_z (the exact interval from the noncentral t distribution of
the observed t). Where that interval reaches 0 or below, the upper end of the range is unbounded.
This plans the next study from the current one; it is not a post-hoc justification of the current
result. The exact sign-flip test additionally needs 2^-n ≤ alpha before any outcome can be
significant.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import optimize, stats

from lorascope.stats._arrays import as_sample, is_constant, unit_scaled
from lorascope.stats.effect import cohens_d_paired
from lorascope.stats.permutation import min_attainable_p

MAX_SEEDS = 100_000


def exact_floor_pairs(corrected_alpha: float, alternative: str = "greater") -> int:
    """Fewest non-zero pairs whose sign-flip floor is at or below ``corrected_alpha``."""
    k = 1
    while min_attainable_p(k, alternative) > corrected_alpha:
        k += 1
    return k


def _t_power(effect: float, n: int, alpha: float) -> float:
    """Power of the one-sided paired t-test of d_z = ``effect`` with n pairs at level ``alpha``.

    P(T > t_{1−α, n−1}) for T noncentral t with n − 1 degrees of freedom and noncentrality
    d_z √n: the quantity statsmodels' ``TTestPower(alternative="larger")`` computes, but taken
    from scipy's ``nct.sf``. statsmodels evaluates it as 1 − ``special.nctdtr``, which is NaN far
    in the upper tail (d_z = 0.7, n = 3126, α = 0.05/3, where the power is 1); :func:`pairs_for_power`
    would read that NaN as "not enough power" and bisect to thousands of pairs instead of 21.
    """
    df = n - 1
    crit = float(stats.t.isf(alpha, df))
    noncentrality = effect * math.sqrt(n)
    power = float(stats.nct.sf(crit, df, noncentrality))
    if math.isnan(power):  # only far in a tail, where the power is 1 (δ ≫ crit) or 0 (δ ≪ crit)
        power = 1.0 if noncentrality > crit else 0.0
    return power


def pairs_for_power(effect: float, corrected_alpha: float, power: float = 0.8) -> int | None:
    """Fewest seed pairs at which a one-sided paired t-test of effect size ``effect`` (d_z) has ``power``.

    Returns:
        n ≥ 2, or None when ``effect`` ≤ 0 or more than ``MAX_SEEDS`` pairs would be needed.
    """
    if not effect > 0 or _t_power(effect, MAX_SEEDS, corrected_alpha) < power:
        return None
    low, high = 2, MAX_SEEDS  # power grows with n: bisect for the smallest n reaching it
    while low < high:
        mid = (low + high) // 2
        if _t_power(effect, mid, corrected_alpha) >= power:
            high = mid
        else:
            low = mid + 1
    return int(low)


def effect_size_interval(deltas: Any, *, confidence: float = 0.95) -> tuple[float, float]:
    """Exact confidence interval for the paired effect size d_z = mean / sd of the differences.

    The observed t = d_z · √n follows a noncentral t distribution with n − 1 degrees of freedom and
    noncentrality δ = d_z(true) · √n; the interval inverts it (the bounds of δ at which the observed
    t is the upper and the lower (1 − confidence)/2 quantile), divided by √n.

    Args:
        deltas: float array [n], n ≥ 2, paired differences with non-zero spread.
        confidence: coverage in (0, 1).

    Returns:
        (low, high) for d_z; (NaN, NaN) when the differences have zero spread.
    """
    d = as_sample(deltas, "deltas", min_n=2)
    if is_constant(d):
        return math.nan, math.nan
    n = d.shape[0]
    unit = unit_scaled(d)[0]  # d_z is scale-free; rescaled, tiny or huge differences neither under- nor overflow
    t_obs = float(unit.mean() / unit.std(ddof=1) * np.sqrt(n))
    tail = (1.0 - confidence) / 2.0

    def solve(target: float) -> float:
        # P(T ≤ t_obs | δ) falls as δ grows: widen the bracket until it holds the root.
        def f(delta: float) -> float:
            cdf = float(stats.nct.cdf(t_obs, n - 1, delta))
            if math.isnan(cdf):  # scipy gives NaN far in the tails, where the cdf is 0 (δ ≫ t) or 1 (δ ≪ t)
                cdf = 0.0 if delta > t_obs else 1.0
            return cdf - target

        width = 10.0 + abs(t_obs)
        while f(t_obs - width) < 0 or f(t_obs + width) > 0:
            width *= 2
        return float(optimize.brentq(f, t_obs - width, t_obs + width, xtol=1e-10))

    low, high = solve(1.0 - tail), solve(tail)
    return float(low / np.sqrt(n)), float(high / np.sqrt(n))


def seeds_needed(deltas: Any, corrected_alpha: float, power: float = 0.8, *, confidence: float = 0.95) -> dict[str, Any]:
    """Seed pairs for ``power`` in a one-sided paired t-test of mean(deltas) > 0.

    Args:
        deltas: float array [n], per-seed differences oriented so that the claim is mean > 0
            (e.g. log(1 − min_reduction) − log(drift_lora / drift_full)).
        corrected_alpha: the per-test level the next study would need to reach.
        power: target power in (0, 1).
        confidence: coverage of the interval for d_z the range is read from.

    Returns:
        dict with ``t_range`` ([fewest, most] seed pairs: at the upper and at the lower end of the
        interval for d_z; the most is None when that end is ≤ 0 or beyond ``MAX_SEEDS``: unbounded),
        ``t`` (the pairs at the observed d_z, None when it is ≤ 0; a point inside the range, not a
        plan), ``effect_size_dz`` and ``effect_size_dz_ci``, ``confidence``, ``exact_floor`` (pairs
        the exact test needs to be able to reach alpha at all), ``power`` and a ``note``.
    """
    d = as_sample(deltas, "deltas", min_n=2)
    out: dict[str, Any] = {"t": None, "t_range": [None, None], "exact_floor": exact_floor_pairs(corrected_alpha),
                           "power": power, "confidence": confidence, "effect_size_dz": None,
                           "effect_size_dz_ci": [None, None], "note": ""}
    if is_constant(d):
        out["note"] = "the differences have zero spread: power cannot be estimated from them"
        return out
    effect = float(cohens_d_paired(d))
    low, high = effect_size_interval(d, confidence=confidence)
    out.update(effect_size_dz=effect, effect_size_dz_ci=[low, high])
    out["t"] = pairs_for_power(effect, corrected_alpha, power)
    out["t_range"] = [pairs_for_power(high, corrected_alpha, power), pairs_for_power(low, corrected_alpha, power)]
    if high <= 0:
        out["note"] = (f"the whole {confidence:.0%} interval of the effect size points away from the claim: no number of "
                       "seeds gives power for it")
    elif out["t_range"][1] is None:
        out["note"] = (f"the {confidence:.0%} interval of the effect size d_z ({low:.2f} to {high:.2f}) reaches "
                       f"{'0' if low <= 0 else 'effects too small to plan for'}: the seeds needed are unbounded above")
    return out


def replan(info: dict[str, Any] | None, corrected_alpha: float) -> dict[str, Any] | None:
    """``info`` from :func:`seeds_needed` re-planned for another per-test level (e.g. once the family is known).

    The effect size and its interval do not depend on alpha; the seed counts and the exact floor do.
    """
    if not info or info.get("effect_size_dz") is None:
        return None if info is None else {**info, "exact_floor": exact_floor_pairs(corrected_alpha)}
    power = info.get("power", 0.8)
    out = {**info, "exact_floor": exact_floor_pairs(corrected_alpha),
           "t": pairs_for_power(info["effect_size_dz"], corrected_alpha, power)}
    if info.get("effect_size_dz_ci"):  # records written before the range existed have none
        low, high = info["effect_size_dz_ci"]
        out["t_range"] = [pairs_for_power(high, corrected_alpha, power), pairs_for_power(low, corrected_alpha, power)]
    return out
