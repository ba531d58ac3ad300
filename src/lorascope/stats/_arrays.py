"""Input checks shared by the statistics: 1-D finite samples and paired differences."""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.stats.result import ALTERNATIVES


def as_sample(a: Any, name: str, *, min_n: int = 1) -> np.ndarray:
    """Check and convert a sample of numbers.

    Args:
        a: array-like [n].
        name: how to call it in error messages.
        min_n: smallest n the caller can work with.

    Returns:
        float64 array [n].

    Raises:
        LorascopeError: not 1-D, non-numeric, NaN/inf, or fewer than ``min_n`` values.
    """
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LorascopeError(f"{name} must be a 1-D array of numbers: {exc}") from None
    if arr.ndim != 1:
        raise LorascopeError(f"{name} must be a 1-D array of numbers; got shape {arr.shape}")
    if arr.shape[0] < min_n:
        raise LorascopeError(f"{name} has {arr.shape[0]} value(s); this needs at least {min_n}")
    if not np.isfinite(arr).all():
        raise LorascopeError(f"{name} contains NaN or inf; every value must be finite")
    return arr


def paired_deltas(a: Any, b: Any, names: tuple[str, str] = ("a", "b"), *, min_n: int = 1) -> np.ndarray:
    """a − b for two samples paired by position (e.g. by seed).

    Args:
        a: array-like [n].
        b: array-like [n].
        names: how to call a and b in error messages.
        min_n: smallest n the caller can work with.

    Returns:
        float64 array [n].
    """
    x = as_sample(a, names[0], min_n=min_n)
    y = as_sample(b, names[1], min_n=min_n)
    if x.shape != y.shape:
        raise LorascopeError(
            f"{names[0]} and {names[1]} must be paired (same length, same order); "
            f"got {x.shape[0]} and {y.shape[0]} values"
        )
    return np.asarray(x - y)


def check_alternative(alternative: str) -> None:
    """Raise unless alternative is one of "two-sided", "greater", "less"."""
    if alternative not in ALTERNATIVES:
        raise LorascopeError(f"alternative must be one of {', '.join(ALTERNATIVES)}; got {alternative!r}")


def is_constant(a: np.ndarray) -> bool:
    """True when all values are equal up to rounding (relative 1e-12 of their magnitude).

    Differences of equal per-seed metrics can carry 1e-17 noise, which would make a t statistic
    of 1e16 instead of an undefined one.
    """
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    return float(np.ptp(a)) <= 1e-12 * scale


def unit_scaled(a: np.ndarray) -> tuple[np.ndarray, int]:
    """``a`` times 2^−e, with e the binary exponent of max |a|, so that the largest |value| is in [0.5, 1).

    Multiplying by a power of two is exact, so a scale-free statistic (t, d_z) of the result is
    bit-identical to that of ``a`` wherever ``a``'s own arithmetic neither underflows nor
    overflows; where it would (squared deviations of values below ~1e-154 underflow to 0 and
    make t = ±inf, p = 0; above ~1e154 they overflow), the scaled values give the right answer.

    Args:
        a: float array [n].

    Returns:
        (scaled float array [n], e); ``ldexp(x, e)`` carries a result x in the scaled units back.
    """
    top = float(np.max(np.abs(a))) if a.size else 0.0
    if top == 0.0:
        return a, 0
    e = int(np.frexp(top)[1])
    return np.ldexp(a, -e), e
