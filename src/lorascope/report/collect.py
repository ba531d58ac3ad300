"""Gather a study's saved records (never models) into one typed value for the report: :class:`StudyRecords`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import JsonValue

from lorascope.bench.record import BenchRecord
from lorascope.drift.record import DriftRecord
from lorascope.lenses.records import ForgettingRecord, ProbesRecord, WeightsRecord
from lorascope.records import BaselinesRecord, SanityRecord
from lorascope.run_folder import RunFolder, RunRecord
from lorascope.study.layout import StudyLayout

LENSES = ("weights", "forgetting", "probes")


@dataclass(frozen=True)
class StudyRun:
    """A finished training run as the report groups it: its ``metrics.json`` record and its folder's name."""

    record: RunRecord
    folder: str

    @property
    def label(self) -> str:
        """The method as the study names it (the variant where one is set)."""
        return self.record.label


@dataclass(frozen=True)
class StudyTimings:
    """The study's journal (``timings.json``): seconds per stage summed over every invocation, and the
    invocations themselves (empty for studies that stored only their last invocation's times)."""

    total_s: dict[str, float]
    invocations: list[JsonValue]


@dataclass(frozen=True)
class StudyRecords:
    """Everything a report shows, as the stages recorded it; a stage the study did not run is None or empty.

    Attributes:
        study: the study's folder.
        config: the study's ``config.yaml`` as run.
        runs: every finished training run (failed ones included, with their reason).
        drift, weights, forgetting, probes: task -> that analysis's record.
        drift_skipped: task -> why the drift stage skipped it; ``lens_skipped``: lens -> task -> why.
        provenance: the first run's ``provenance.json`` (versions, git revision, hardware).
    """

    study: Path
    config: dict[str, JsonValue]
    baselines: BaselinesRecord
    sanity: SanityRecord | None
    runs: list[StudyRun]
    drift: dict[str, DriftRecord]
    weights: dict[str, WeightsRecord] = field(default_factory=dict)
    forgetting: dict[str, ForgettingRecord] = field(default_factory=dict)
    probes: dict[str, ProbesRecord] = field(default_factory=dict)
    bench: BenchRecord | None = None
    drift_skipped: dict[str, str] = field(default_factory=dict)
    lens_skipped: dict[str, dict[str, str]] = field(default_factory=dict)
    timings: StudyTimings = field(default_factory=lambda: StudyTimings({}, []))
    provenance: dict[str, JsonValue] | None = None

    def runs_of(self, task: str) -> list[StudyRun]:
        """The runs of ``task``, in the order collected."""
        return [r for r in self.runs if r.record.task == task]

    # The report's sections are moving from reading dicts to reading these records; until each has,
    # ``records["drift"]`` is the dict view every section used to get from ``collect``.
    @cached_property
    def _as_dicts(self) -> dict[str, Any]:
        return {
            "study": self.study, "config": self.config, "baselines": self.baselines, "sanity": self.sanity,
            "runs": [{**r.record.model_dump(exclude_unset=True), "method": r.label, "folder": r.folder} for r in self.runs],
            "drift": {task: r.as_json() for task, r in self.drift.items()},
            "weights": {task: r.model_dump() for task, r in self.weights.items()},
            "forgetting": {task: r.model_dump() for task, r in self.forgetting.items()},
            "probes": {task: r.model_dump() for task, r in self.probes.items()},
            "bench": None if self.bench is None else self.bench.as_json(),
            "drift_skipped": self.drift_skipped, "lens_skipped": self.lens_skipped,
            "timings": {"total_s": self.timings.total_s, "invocations": self.timings.invocations},
            "provenance": self.provenance,
        }

    def __getitem__(self, key: str) -> Any:
        return self._as_dicts[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._as_dicts.get(key, default)


def _json_object(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def collect(study: Path) -> StudyRecords:
    """The study's records, each read through its type (checked, and upgraded from older versions)."""
    from lorascope.study.runner import load_timings

    layout = StudyLayout(study)
    runs = [StudyRun(run.record(), run.name) for run in RunFolder.finished_under(layout.train)]
    journal = load_timings(layout.timings)
    provenance = next((_json_object(p) for p in sorted(layout.train.glob("*/provenance.json"))), None)
    return StudyRecords(
        study=study,
        config=(yaml.safe_load(layout.config.read_text()) if layout.config.is_file() else None) or {},
        baselines=(BaselinesRecord.read(layout.baselines) if layout.baselines.is_file()
                   else BaselinesRecord.create(baselines=[])),
        sanity=SanityRecord.read(layout.sanity) if layout.sanity.is_file() else None,
        runs=runs,
        drift={p.parent.name: DriftRecord.read(p) for p in layout.drift_results},
        weights={p.parent.name: WeightsRecord.read(p) for p in layout.weights_results},
        forgetting={p.parent.name: ForgettingRecord.read(p) for p in layout.forgetting_results},
        probes={p.parent.name: ProbesRecord.read(p) for p in layout.probes_results},
        bench=BenchRecord.read(layout.bench_json) if layout.bench_json.is_file() else None,
        drift_skipped=_json_object(layout.drift_skipped),
        lens_skipped={lens: _json_object(layout.skipped(lens)) for lens in LENSES},
        timings=StudyTimings(journal["total_s"], journal["invocations"]),
        provenance=provenance,
    )
