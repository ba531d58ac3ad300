"""The study's journal, ``timings.json``: seconds per stage summed over every invocation of the study
(a killed and resumed run, a slice run with ``--only``), and each invocation: the stages it planned,
the one running, the ones finished with their seconds, the one that failed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from lorascope.artifacts import read_json


def load_timings(path: Path) -> dict[str, Any]:
    """The journal at ``path`` as ``{"total_s": {stage: s}, "invocations": [...]}`` (empty when there is none)."""
    stored = read_json(path) if path.is_file() else {}
    if "total_s" not in stored:  # the older flat form {stage: seconds of the last invocation}
        stored = {"total_s": dict(stored), "invocations": []}
    return stored


@dataclass(frozen=True)
class StudyTimings:
    """A journal as read: seconds per stage summed over every invocation, and the invocations themselves
    (empty for studies that stored only their last invocation's times)."""

    total_s: dict[str, float]
    invocations: list[JsonValue]

    @classmethod
    def read(cls, path: Path) -> StudyTimings:
        journal = load_timings(path)
        return cls(journal["total_s"], journal["invocations"])
