"""Relative differences of positive, skewed quantities (e.g. drift), analysed on the log scale.

Per-seed drift is positive and right-skewed: one published study spans 0.004–0.109 across seeds
(sd of log drift ≈ 0.9). A ratio of arithmetic means is dominated by the largest seeds, and an
interval that is symmetric on the ratio scale cannot follow that skew. On the log scale each seed
pair contributes r_i = log(a_i / b_i); the geometric-mean ratio exp(mean r) and Δ% = 100 · (1 −
exp(mean r)) summarise them, and the t interval and the exact sign-flip test on the r_i, carried
back by exp, give intervals that are asymmetric where the data are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.stats._arrays import as_sample
from lorascope.stats.bootstrap import ConfidenceInterval
from lorascope.stats.paired import paired_t_test, t_interval
from lorascope.stats.permutation import sign_flip_test
from lorascope.stats.result import TestResult, json_number

SCALE = "log ratio"


def log_ratios(numerator: Any, denominator: Any, names: tuple[str, str] = ("numerator", "denominator")) -> np.ndarray:
    """r_i = log(numerator_i / denominator_i) for two samples paired by position.

    Args:
        numerator: float array [n] of positive values (e.g. LoRA drift per seed).
        denominator: float array [n] of positive values, same order (e.g. full fine-tuning drift).
        names: how to call them in error messages.

    Returns:
        float array [n].

    Raises:
        LorascopeError: unequal lengths, NaN/inf, or a value ≤ 0 (no logarithm).
    """
    a = as_sample(numerator, names[0])
    b = as_sample(denominator, names[1])
    if a.shape != b.shape:
        raise LorascopeError(f"{names[0]} and {names[1]} must be paired (same length); got {a.shape[0]} and {b.shape[0]}")
    for name, x in zip(names, (a, b)):
        if np.any(x <= 0):
            raise LorascopeError(f"{name} has a value ≤ 0 ({float(x.min()):g}): a ratio on the log scale needs positive values")
    return np.asarray(np.log(a) - np.log(b))


def positive(*samples: Any) -> bool:
    """True when every value of every sample is finite and > 0 (the log scale applies)."""
    return all(bool(np.all(np.isfinite(np.asarray(s, dtype=float))) and np.all(np.asarray(s, dtype=float) > 0))
               for s in samples)


@dataclass(frozen=True)
class LogRatioSummary:
    """Paired ratios a_i / b_i summarised on the log scale.

    Attributes:
        n: pairs.
        gm_ratio: geometric mean of the per-pair ratios, exp(mean r).
        gm_ratio_ci: (low, high), exp of the Student t interval of mean r.
        confidence: coverage of that interval.
        mean_log_ratio: mean r.
        sd_log_ratio: sd of r (ddof 1).
        ratio_of_means: mean(a) / mean(b), for comparison with the arithmetic reading.
        t_test: paired t-test of mean r = 0 (two-sided).
        sign_flip: exact sign-flip test of r symmetric about 0 (two-sided).
    """

    n: int
    gm_ratio: float
    gm_ratio_ci: tuple[float, float]
    confidence: float
    mean_log_ratio: float
    sd_log_ratio: float
    ratio_of_means: float
    t_test: TestResult
    sign_flip: TestResult

    @property
    def reduction_percent(self) -> float:
        """Δ% = 100 · (1 − geometric-mean ratio)."""
        return 100.0 * (1.0 - self.gm_ratio)

    @property
    def reduction_percent_ci(self) -> tuple[float, float]:
        """(low, high) of Δ%: the ratio interval reversed (a larger ratio is a smaller reduction)."""
        return 100.0 * (1.0 - self.gm_ratio_ci[1]), 100.0 * (1.0 - self.gm_ratio_ci[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the Δ% reading added; NaN and inf become None."""
        return {
            "scale": SCALE, "n": self.n, "gm_ratio": json_number(self.gm_ratio),
            "gm_ratio_ci": [json_number(x) for x in self.gm_ratio_ci], "confidence": self.confidence,
            "reduction_percent": json_number(self.reduction_percent),
            "reduction_percent_ci": [json_number(x) for x in self.reduction_percent_ci],
            "ci_method": "Student t on per-pair log ratios, exponentiated",
            "mean_log_ratio": json_number(self.mean_log_ratio), "sd_log_ratio": json_number(self.sd_log_ratio),
            "ratio_of_means": json_number(self.ratio_of_means),
            "t_test": self.t_test.to_dict(), "sign_flip": self.sign_flip.to_dict(),
        }


def log_ratio_summary(numerator: Any, denominator: Any, *, confidence: float = 0.95, seed: int = 0) -> LogRatioSummary:
    """Geometric-mean ratio of paired positive samples with its t interval and both tests.

    Args:
        numerator: float array [n], n ≥ 2, positive (e.g. LoRA drift per seed).
        denominator: float array [n], positive, same order (e.g. full fine-tuning drift per seed).
        confidence: coverage of the interval.
        seed: seed of Monte-Carlo sign flips (only used beyond 2^20 patterns).

    Raises:
        LorascopeError: n < 2, unequal lengths, NaN/inf or a value ≤ 0.
    """
    r = log_ratios(numerator, denominator)
    if r.shape[0] < 2:
        raise LorascopeError(f"a log-ratio summary needs at least 2 pairs; got {r.shape[0]}")
    low, high = t_interval(r, confidence=confidence)
    return LogRatioSummary(
        n=int(r.shape[0]), gm_ratio=float(np.exp(r.mean())), gm_ratio_ci=(float(np.exp(low)), float(np.exp(high))),
        confidence=confidence, mean_log_ratio=float(r.mean()), sd_log_ratio=float(r.std(ddof=1)),
        ratio_of_means=float(np.mean(numerator) / np.mean(denominator)),
        t_test=paired_t_test(r), sign_flip=sign_flip_test(r, seed=seed),
    )


def reduction_from_log(ci: ConfidenceInterval) -> ConfidenceInterval:
    """An interval for the mean log ratio turned into one for Δ% = 100 · (1 − exp(mean log ratio)).

    exp is increasing and 1 − x decreasing, so the bounds swap; the percentile asymmetry carries over.
    """
    def pct(x: float) -> float:
        return 100.0 * (1.0 - float(np.exp(x)))

    return ConfidenceInterval(pct(ci.estimate), pct(ci.high), pct(ci.low), ci.confidence, ci.method, ci.n,
                              ci.n_resamples, ci.note)
