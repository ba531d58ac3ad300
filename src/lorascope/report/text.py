"""What the report's sections share besides numbers: Markdown tables, a test with its n and p, runs in seed
order. Every number is formatted by ``lorascope.metrics`` (``format_*``), the one place every command and the
report share."""

from __future__ import annotations

from typing import Any

from lorascope.drift.record import DriftRun, Undefined
from lorascope.metrics import format_p
from lorascope.records import StoredTest


def cell(value: object) -> str:
    """``value`` as a Markdown table cell: text with its pipes escaped."""
    return str(value).replace("|", "\\|")  # a pipe inside a cell must not split the row


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table of ``header`` and ``rows``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def short_test(test: StoredTest | None) -> str:
    """"paired t-test (df=7)" -> "paired t-test"; "sign-flip permutation (exact)" -> "exact sign-flip"."""
    name = test.test if test else "?"
    if name.startswith("sign-flip"):
        return "exact sign-flip test" if "exact" in name else "Monte Carlo sign-flip test"
    return name.split(" (")[0]


def test_result(t: StoredTest | Undefined | None) -> str:
    """A test with its n, exact p and, for the sign-flip test, its smallest attainable p (or why it is undefined)."""
    if t is None:
        return "–"
    if isinstance(t, Undefined):
        return t.error
    if t.p_value is None:
        return t.note or "undefined"
    floor = f" (min attainable {format_p(t.min_attainable_p)})" if t.min_attainable_p else ""
    return f"{short_test(t)}, n={t.n}, {t.alternative}: p={format_p(t.p_value)}{floor}"


def seed_sorted(runs: list[DriftRun]) -> list[DriftRun]:
    """Runs by method, then by numeric seed (folder names sort "1337" before "42")."""
    return sorted(runs, key=lambda r: (r.method, r.seed))
