"""Gather a study's saved artifacts (never models) into one dict for the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from lorascope.run_folder import RunFolder


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def collect(study: Path) -> dict[str, Any]:
    """Everything the report shows, keyed by kind; missing stages are None or empty."""
    runs = []
    for run in RunFolder.finished_under(study / "train"):
        runs.append({**run.raw(), "folder": run.name})
    drift = {p.parent.name: json.loads(p.read_text()) for p in sorted((study / "drift").glob("*/drift.json"))}
    config = yaml.safe_load((study / "config.yaml").read_text()) if (study / "config.yaml").is_file() else {}
    return {
        "study": study,
        "config": config or {},
        "baselines": {b["task"]: b for b in (_json(study / "baselines.json") or {}).get("baselines", [])},
        "sanity": _json(study / "sanity.json"),
        "runs": runs,
        "drift": drift,
        "bench": _json(study / "bench" / "bench.json"),
        "drift_skipped": _json(study / "drift" / "skipped.json") or {},
        "timings": _json(study / "timings.json") or {},
        "provenance": next((json.loads(p.read_text()) for p in sorted((study / "train").glob("*/provenance.json"))), None),
    }
