"""Gather a study's saved artifacts (never models) into one dict for the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from lorascope.bench.record import BenchRecord
from lorascope.drift.record import DriftRecord
from lorascope.lenses.records import ForgettingRecord, ProbesRecord, WeightsRecord
from lorascope.records import BaselinesRecord, SanityRecord
from lorascope.run_folder import RunFolder
from lorascope.study.layout import StudyLayout


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def collect(study: Path) -> dict[str, Any]:
    """Everything the report shows, keyed by kind; missing stages are None or empty."""
    runs = []
    layout = StudyLayout(study)
    for run in RunFolder.finished_under(layout.train):
        raw = run.raw()
        # The report groups runs as the study names their methods: by variant where one is set.
        runs.append({**raw, "method": raw.get("variant") or raw.get("method"), "folder": run.name})
    config = yaml.safe_load(layout.config.read_text()) if layout.config.is_file() else {}
    return {
        "study": study,
        "config": config or {},
        "baselines": (BaselinesRecord.read(layout.baselines) if layout.baselines.is_file()
                      else BaselinesRecord.create(baselines=[])),
        "sanity": SanityRecord.read(layout.sanity) if layout.sanity.is_file() else None,
        "runs": runs,
        # The analyses' results are read as their records (checked, and upgraded from older versions);
        # the report still takes them as dicts.
        "drift": {p.parent.name: DriftRecord.read(p).as_json() for p in layout.drift_results},
        "weights": {p.parent.name: WeightsRecord.read(p).model_dump() for p in layout.weights_results},
        "forgetting": {p.parent.name: ForgettingRecord.read(p).model_dump() for p in layout.forgetting_results},
        "probes": {p.parent.name: ProbesRecord.read(p).model_dump() for p in layout.probes_results},
        "bench": BenchRecord.read(layout.bench_json).as_json() if layout.bench_json.is_file() else None,
        "drift_skipped": _json(layout.drift_skipped) or {},
        # Why a lens measured no task it was asked to: {lens: {task: reason}}.
        "lens_skipped": {lens: _json(layout.skipped(lens)) or {} for lens in ("weights", "forgetting", "probes")},
        "timings": _json(layout.timings) or {},
        "provenance": next((json.loads(p.read_text()) for p in sorted(layout.train.glob("*/provenance.json"))), None),
    }
