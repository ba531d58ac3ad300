"""Gather a study's saved records (never models) into one typed value for the report: :class:`StudyRecords`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import JsonValue

from lorascope.bench.record import BenchRecord
from lorascope.drift.record import DriftRecord
from lorascope.lenses.records import ForgettingRecord, ProbesRecord, WeightsRecord
from lorascope.provenance import Provenance, read_provenance
from lorascope.records import BaselinesRecord, SanityRecord
from lorascope.run_folder import RunFolder, RunRecord
from lorascope.study.journal import StudyTimings
from lorascope.study.layout import StudyLayout
from lorascope.study.units import read_skipped

# The lens stages, in the order a report shows them.
LENS_STAGES = ("weights", "forgetting", "probes")


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
    provenance: Provenance | None = None

    def lens(self, name: str) -> Mapping[str, WeightsRecord | ForgettingRecord | ProbesRecord]:
        """One lens's results (``weights``, ``forgetting`` or ``probes``) by task."""
        by_lens: dict[str, Mapping[str, WeightsRecord | ForgettingRecord | ProbesRecord]] = {
            "weights": self.weights, "forgetting": self.forgetting, "probes": self.probes}
        return by_lens[name]

    def runs_of(self, task: str) -> list[StudyRun]:
        """The runs of ``task``, in the order collected."""
        return [r for r in self.runs if r.record.task == task]


def collect(study: Path) -> StudyRecords:
    """The study's records, each read through its type (checked, and upgraded from older versions)."""
    layout = StudyLayout(study)
    runs = [StudyRun(run.record(), run.name) for run in RunFolder.finished_under(layout.train)]
    provenance = next((read_provenance(p) for p in sorted(layout.train.glob("*/provenance.json"))), None)
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
        drift_skipped=read_skipped(layout.drift_skipped),
        lens_skipped={lens: read_skipped(layout.skipped(lens)) for lens in LENS_STAGES},
        timings=StudyTimings.read(layout.timings),
        provenance=provenance,
    )
