"""``report/summary.json`` as a typed value: :class:`SummaryRecord` (see :mod:`lorascope.records`).

The study's numbers without per-sample data, built by :func:`lorascope.report.build.summary` from
the stages' own records: each part here is the stage record's part, or the record less what the
summary leaves out (sample ids, per-matrix weight records, per-layer rows turned into lists).
Written through the type, so a summary whose shape drifts from the stages' records fails when it
is built, not when someone reads it.

A summary is derived output, rebuilt from the study folder by ``lorascope report``: a file of an
older version is not upgraded but refused in one line naming the version.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import JsonValue

from lorascope.bench.record import BenchEnvironment, BenchRow
from lorascope.drift.record import (
    Bounds,
    DriftComparison,
    DriftControl,
    DriftRunMeans,
    Frontier,
    MethodSummary,
    NoiseFloor,
    Robustness,
    SelectedPoint,
    SkippedRun,
)
from lorascope.errors import DataError
from lorascope.lenses.records import LensComparison, LensControl, LensRun, WeightSummary, WholeModelUpdate
from lorascope.provenance import Provenance
from lorascope.records import Baseline, ExactKeysRecord, RecordPart, SanityCheck


class SummaryRun(RecordPart):
    """A training run: its task, label, seed, status and dev metrics."""

    task: str | None
    method: str | None
    seed: int | None
    status: str | None
    main_metric: str | None
    dev: dict[str, float] | None
    n_train: int | None
    n_eval: int | None
    runtime_s: float | None


class SanitySummary(RecordPart):
    """The overfitting checks: whether all passed, and each."""

    passed: bool
    results: list[SanityCheck]


class DriftRunSummary(DriftRunMeans):
    """A run's drift without its per-layer rows: ``per_layer[measure][i]`` is layer ``per_layer["layer"][i]``'s."""

    per_layer: dict[str, list[int | float | None]]


class DriftSummary(RecordPart):
    """One task's drift record without sample ids and between-seed pairs; ``comparisons``: the other LoRA labels'."""

    n_samples: int
    n_layers: int | None
    methods: dict[str, MethodSummary]
    noise_floor: dict[str, NoiseFloor | None] | None
    controls: list[DriftControl]
    comparison: DriftComparison
    runs: list[DriftRunSummary]
    skipped_runs: list[SkippedRun]
    dev_examples_note: str | None
    robustness: Robustness | None = None
    comparisons: dict[str, DriftComparison] = {}
    frontier: Frontier | None = None
    selection: dict[str, SelectedPoint] | None = None


class InteractionVerdict(RecordPart):
    """The method × setting interaction test, as the frontier verdict states it."""

    test: str | None
    F: float | None
    df: list[int | float] | None
    p: float | None
    n: int | None
    statement: str | None


class FrontierVerdict(RecordPart):
    """A swept task's verdict at matched accuracy, the interaction test, and the points compared."""

    outcome: str | None
    ratio: float | None
    ci: Bounds | None
    p: float | None
    overlap: Bounds | None
    statement: str | None
    interaction: InteractionVerdict | None
    compared: dict[str, str | None]
    missing: list[str]


class WeightRunSummary(RecordPart):
    """A run as the weight lens measured it, without its per-matrix records."""

    run: str
    method: str
    seed: int
    summary: WeightSummary
    summary_whole: WholeModelUpdate
    summary_by_variant: dict[str, WeightSummary] | None = None


class WeightsSummary(RecordPart):
    """The weight lens of one task: its settings, how many matrices it compared, the comparison and the runs."""

    config: dict[str, JsonValue]
    matrices: int
    comparison: LensComparison
    runs: list[WeightRunSummary]


class ForgettingSummary(RecordPart):
    """The forgetting lens of one task (see :class:`~lorascope.lenses.records.ForgettingRecord`)."""

    text_source: str
    n_texts: int
    base_loss: float
    controls: list[LensControl]
    comparison: LensComparison
    runs: list[LensRun]


class ProbesSummary(RecordPart):
    """The probe lens of one task (see :class:`~lorascope.lenses.records.ProbesRecord`)."""

    probe_tasks: list[str]
    base: dict[str, float]
    majority: dict[str, float]
    uninformative: list[str]
    controls: list[LensControl]
    comparison: LensComparison
    runs: list[LensRun]


class BenchSummary(RecordPart):
    """The serving benchmark's environment, whether every check passed, and its headline columns per row."""

    environment: BenchEnvironment | None
    checks_passed: bool | None
    results: list[BenchRow]


class SummaryRecord(ExactKeysRecord):
    """``report/summary.json``: every stage's numbers, keyed by task where a stage runs per task.

    Attributes:
        study: the study's name; ``config``: its settings as run.
        frontier: per swept task, the verdict at matched accuracy.
        timings: each stage's seconds, in total and per invocation.
    """

    KIND: ClassVar[str] = "summary"
    FILE: ClassVar[str] = "summary.json"

    study: str | None
    config: dict[str, JsonValue]
    runs: list[SummaryRun]
    baselines: dict[str, Baseline]
    sanity: SanitySummary | None
    drift: dict[str, DriftSummary]
    frontier: dict[str, FrontierVerdict]
    weights: dict[str, WeightsSummary]
    forgetting: dict[str, ForgettingSummary]
    probes: dict[str, ProbesSummary]
    bench: BenchSummary | None
    timings: dict[str, JsonValue]
    provenance: Provenance | None

    @classmethod
    def upgrade(cls, raw: dict[str, Any], version: int) -> dict[str, Any]:
        """The fields of the current version; an older one is refused: a summary is rebuilt, not upgraded."""
        if version < cls.VERSION:
            raise DataError(f"{cls.KIND} record of schema version {version}, written by an older lorascope: rebuild it "
                            "with `lorascope report <study folder>`")
        return raw
