"""Formatting shared by the report's sections: tables, p-values with their test, intervals. Task metrics are
formatted by ``lorascope.metrics.format_metric``, the one place every command and the report share."""

from __future__ import annotations

import math
from typing import Any


def cell(value: Any) -> str:
    """``value`` as a Markdown table cell: text with its pipes escaped."""
    return str(value).replace("|", "\\|")  # a pipe inside a cell must not split the row


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table of ``header`` and ``rows``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def num(x: float | None, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals, or "–" for None or NaN."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def p_value(x: float | None) -> str:
    """A p-value as ``lorascope.metrics.format_p`` writes it."""
    from lorascope.metrics import format_p

    return format_p(x)


def interval(low: float | None, high: float | None, digits: int = 3, unit: str = "") -> str:
    """"[a, b]", or "unbounded" where a bound is undefined (stored as None)."""
    if low is None or high is None:
        return "unbounded"
    return f"[{low:.{digits}f}{unit}, {high:.{digits}f}{unit}]"


def short_test(test: dict[str, Any] | None) -> str:
    """"paired t-test (df=7)" -> "paired t-test"; "sign-flip permutation (exact)" -> "exact sign-flip"."""
    name: str = (test or {}).get("test", "?")
    if name.startswith("sign-flip"):
        return "exact sign-flip test" if "exact" in name else "Monte Carlo sign-flip test"
    return name.split(" (")[0]


def test_result(t: dict[str, Any] | None) -> str:
    """A test with its n, exact p and, for the sign-flip test, its smallest attainable p."""
    if not t:
        return "–"
    if t.get("p_value") is None:
        return t.get("error") or t.get("note") or "undefined"
    floor = f" (min attainable {p_value(t['min_attainable_p'])})" if t.get("min_attainable_p") else ""
    return f"{short_test(t)}, n={t['n']}, {t['alternative']}: p={p_value(t['p_value'])}{floor}"


def seed_sorted(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs by method, then by numeric seed (folder names sort "1337" before "42")."""
    return sorted(runs, key=lambda r: (r.get("method", ""), int(r["seed"])))


def reduction_interval(low: float | None, high: float | None) -> str:
    """A Δ% interval with its upper bound capped at 100%: drift is never negative, so LoRA cannot
    drift more than 100% less; a symmetric interval can overshoot that bound, which says nothing."""
    if low is None or high is None:
        return "unbounded"
    capped = " (capped at 100%)" if high > 100 else ""
    return f"[{low:.1f}%, {min(high, 100.0):.1f}%]{capped}"
