"""The report's Jinja2 environment: each section's prose is a template in ``report/templates/``; the
Python beside it computes only the values a template shows. Every number reaches a template already
formatted by a ``lorascope.metrics.format_*`` function or through the filter named after it (``number``,
``significant``, ``share``, ``p``, ``ratio`` …): the report formats numbers nowhere else (a test in
tests/test_architecture.py keeps it so).

Templates are Markdown. ``{% filter oneline %}`` lets a paragraph wrap in its template and still be
one line in the report (one line per paragraph keeps each sentence searchable in report.md)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import jinja2

from lorascope import metrics
from lorascope.report.text import cell, table, test_result


def oneline(text: str) -> str:
    """A paragraph wrapped over several template lines as one line (its line breaks become spaces),
    keeping a final newline: the blank line after a paragraph stays in the template."""
    joined = re.sub(r"[ \t]*\n[ \t]*", " ", text.rstrip("\n").strip())
    return joined + ("\n" if text.endswith("\n") else "")


@cache
def environment() -> jinja2.Environment:
    """The report's template environment: StrictUndefined (a name a template misspells is an error,
    not an empty string), blocks that leave no blank lines behind, and the number filters."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("lorascope.report", "templates"),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             autoescape=False)  # Markdown, not HTML: the HTML page is converted from it
    env.filters.update(
        oneline=oneline, cell=cell, test=test_result, metric=metrics.format_metric,
        metric_difference=metrics.format_metric_difference, number=metrics.format_number,
        interval=metrics.format_interval, reduction_interval=metrics.format_reduction_interval,
        significant=metrics.format_significant, scientific=metrics.format_scientific, share=metrics.format_share,
        p=metrics.format_p, ratio=metrics.format_ratio, reduction=metrics.format_reduction,
        drift=metrics.format_drift, bounds=metrics.format_bounds, count=metrics.format_count,
    )
    env.globals.update(table=table)
    return env


def render_template(name: str, **context: Any) -> str:
    """Template ``name`` rendered with ``context``, without newlines at its end: sections are joined
    by the report's own template, which places the blank lines between them."""
    return environment().get_template(name).render(**context).rstrip("\n")
