"""The record every statistical test returns: what was tested, on how many pairs, with what p."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

Alternative = Literal["two-sided", "greater", "less"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")


def json_number(v: Any) -> Any:
    """``v`` as JSON can hold it: None for a NaN or infinite float, anything else unchanged."""
    # JSON has no NaN/inf; None keeps "undefined" distinct from any real number.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass(frozen=True)
class TestResult:
    """Outcome of one hypothesis test.

    Attributes:
        test: name of the test, e.g. "paired t-test" or "sign-flip permutation (exact)".
        n: number of observations (pairs) the test used.
        statistic: the test statistic (t, mean delta, ...); NaN when undefined.
        p_value: the exact p-value as computed, not rounded or thresholded; NaN when undefined.
        alternative: "two-sided", "greater" or "less" (for the mean of the deltas vs the null), or
            "equivalence" for two one-sided tests against a margin.
        min_attainable_p: smallest p-value this test can return with this n (and these ties), or
            None when the test has no floor (e.g. the t-test).
        n_resamples: Monte-Carlo draws used, or None for exact/analytic tests.
        note: why a value is NaN or how to read the result; empty when nothing to say.
    """

    __test__ = False  # not a pytest test class, despite the name

    test: str
    n: int
    statistic: float
    p_value: float
    alternative: str
    min_attainable_p: float | None = None
    n_resamples: int | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; NaN and inf become None."""
        return {k: json_number(v) for k, v in asdict(self).items()}
