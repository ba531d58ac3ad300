"""Family-wise error corrections for several p-values (statsmodels ``multipletests``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from statsmodels.stats.multitest import multipletests

from lorascope.errors import LorascopeError

Method = Literal["bonferroni", "holm"]


@dataclass(frozen=True)
class Correction:
    """Adjusted p-values and decisions for a family of tests.

    Attributes:
        method: "bonferroni" or "holm".
        alpha: family-wise error rate.
        p_values: float array [m], raw p-values.
        p_adjusted: float array [m], adjusted p-values (capped at 1); reject where ≤ alpha.
        reject: bool array [m].
    """

    method: str
    alpha: float
    p_values: np.ndarray
    p_adjusted: np.ndarray
    reject: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "method": self.method,
            "alpha": self.alpha,
            "p_values": self.p_values.tolist(),
            "p_adjusted": self.p_adjusted.tolist(),
            "reject": self.reject.tolist(),
        }


def bonferroni_alpha(alpha: float, m: int) -> float:
    """Per-test significance level alpha / m that holds the family-wise error rate at alpha."""
    if m < 1:
        raise LorascopeError(f"the number of comparisons must be at least 1; got {m}")
    if not 0.0 < alpha < 1.0:
        raise LorascopeError(f"alpha must be in (0, 1); got {alpha}")
    return alpha / m


def correct(p_values: Any, *, method: Method = "holm", alpha: float = 0.05) -> Correction:
    """Adjust p-values for multiple comparisons.

    Holm is uniformly more powerful than Bonferroni with the same family-wise guarantee, so it is
    the default; Bonferroni is kept because a fixed per-test alpha is easier to pre-register.

    Args:
        p_values: float array [m] of p-values in [0, 1].
        method: "bonferroni" or "holm".
        alpha: family-wise error rate in (0, 1).

    Returns:
        Correction with adjusted p-values and reject flags.

    Raises:
        LorascopeError: empty input, values outside [0, 1] or NaN, unknown method, bad alpha.
    """
    if method not in ("bonferroni", "holm"):
        raise LorascopeError(f"method must be 'bonferroni' or 'holm'; got {method!r}")
    if not 0.0 < alpha < 1.0:
        raise LorascopeError(f"alpha must be in (0, 1); got {alpha}")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise LorascopeError(f"p_values must be a non-empty 1-D array; got shape {p.shape}")
    if not np.all((p >= 0.0) & (p <= 1.0)):
        raise LorascopeError("p_values must all lie in [0, 1] (no NaN); drop undefined tests before correcting")
    reject, p_adj, _, _ = multipletests(p, alpha=alpha, method=method)
    return Correction(method=method, alpha=alpha, p_values=p, p_adjusted=p_adj, reject=np.asarray(reject))


def bonferroni(p_values: Any, *, alpha: float = 0.05) -> Correction:
    """Bonferroni: p_adj = min(1, m p). See :func:`correct`."""
    return correct(p_values, method="bonferroni", alpha=alpha)


def holm(p_values: Any, *, alpha: float = 0.05) -> Correction:
    """Holm step-down: p_(i) adjusted = max_{j ≤ i} min(1, (m − j + 1) p_(j)). See :func:`correct`."""
    return correct(p_values, method="holm", alpha=alpha)
