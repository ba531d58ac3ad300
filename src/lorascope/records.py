"""Stage records: a stage's result file as one typed value that is also its on-disk schema.

A record file is a JSON object holding the record's fields and two more: ``kind`` (which stage's
record it is) and ``schema_version``. :meth:`StageRecord.read` validates a file back into the type
that wrote it, so readers (the study, the report, the command line) take typed values, not dicts.
Versions:

- a file written before records were versioned (no ``kind``, no ``schema_version``) is version 0
  and is read through the type's :meth:`StageRecord.upgrade`, as the study's promise to resume
  old folders requires;
- a version newer than this lorascope knows is an error naming the file and both versions;
- any other mismatch (a missing or mistyped field, another stage's kind) is an error naming the
  file and the key.

The record types of the sanity checks and the baselines live here, with :class:`StoredTest`, the
stored form of a statistical test every analysis record uses. Training runs have theirs in
:mod:`lorascope.run_folder` (:class:`~lorascope.run_folder.RunRecord`, which keeps every key a run
wrote); the lenses' in :mod:`lorascope.lenses.records`; drift's in :mod:`lorascope.drift.record`;
the serving benchmark's in :mod:`lorascope.bench.record`; a search's in :mod:`lorascope.hpo.record`;
the report's summary in :mod:`lorascope.report.record`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from lorascope.artifacts import write_json
from lorascope.config import describe_validation_error
from lorascope.errors import DataError


class StageRecord(BaseModel):
    """Base of every versioned stage record (see the module docstring).

    Class attributes a record type sets:
        KIND: the stage's name, written as ``kind``.
        VERSION: the schema version it writes (raised whenever a field changes meaning or shape).
        FILE: the file's name inside the stage's folder.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1
    FILE: ClassVar[str]

    kind: str
    schema_version: int

    @classmethod
    def create(cls, **fields: Any) -> Self:
        """A new record of this type at the current schema version."""
        return cls(kind=cls.KIND, schema_version=cls.VERSION, **fields)

    @classmethod
    def upgrade(cls, raw: dict[str, Any], version: int) -> dict[str, Any]:
        """The fields of a version-``version`` file as the current version has them (default: unchanged)."""
        return raw

    @classmethod
    def read(cls, path: Path) -> Self:
        """The record saved at ``path``.

        Raises:
            DataError: the file is not JSON, is another stage's record, has a newer schema version
                than this lorascope reads, or a field is missing or of the wrong type.
        """
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: not a readable {cls.KIND} record ({type(err).__name__}: {err})") from None
        if not isinstance(raw, dict):
            raise DataError(f"{path}: expected a JSON object (a {cls.KIND} record), got {type(raw).__name__}")
        version = raw.pop("schema_version", 0)
        kind = raw.pop("kind", cls.KIND if version == 0 else None)
        if kind != cls.KIND:
            raise DataError(f"{path}: a '{kind}' record where a '{cls.KIND}' record was expected")
        if not isinstance(version, int) or version < 0:
            raise DataError(f"{path}: 'schema_version' must be a non-negative integer (got {version!r})")
        if version > cls.VERSION:
            raise DataError(f"{path}: {cls.KIND} record of schema version {version}; this lorascope reads versions "
                            f"up to {cls.VERSION} (upgrade lorascope to read it)")
        try:
            return cls.model_validate({**cls.upgrade(raw, version), "kind": cls.KIND, "schema_version": cls.VERSION})
        except ValidationError as err:
            raise DataError(describe_validation_error(err, str(path))) from None
        except DataError as err:  # an upgrade that cannot be made says why; the file is named here
            raise DataError(f"{path}: {err}") from None

    def as_json(self) -> dict[str, Any]:
        """The file's JSON object, as Python values (python mode: a NaN loss stays NaN, as json.dumps writes it)."""
        return self.model_dump()

    def write(self, folder: Path) -> Path:
        """Save the record as ``folder / FILE`` (atomically); returns the file's path."""
        path = folder / self.FILE
        write_json(path, self.as_json())
        return path


class RecordPart(BaseModel):
    """Base of the parts of a record (a run, a test, a comparison): immutable, and no key it does not name."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ExactKeysRecord(StageRecord):
    """A record whose file holds exactly the keys it was made or read with.

    For results with many optional parts (drift, the serving benchmark): a part a file lacked stays
    absent, not written back as null, so the file a record writes equals the dict the analysis made,
    and an older file rewritten (the study's verdict correction) changes nothing else.
    """

    def as_json(self) -> dict[str, Any]:
        """The file's JSON object, as Python values (every field set when made or read, no other)."""
        return self.model_dump(exclude_unset=True)


class StoredTest(RecordPart):
    """A :class:`~lorascope.stats.result.TestResult` as JSON holds it (NaN and inf stored as None)."""

    test: str
    n: int
    statistic: float | None
    p_value: float | None
    alternative: str
    min_attainable_p: float | None = None
    n_resamples: int | None = None
    note: str = ""


class Baseline(BaseModel):
    """One task's trivial baselines on the dev rows its runs are scored on.

    Attributes:
        task: the task's name.
        n_dev: dev rows scored.
        majority_label: the most frequent label of the training split, predicted for every dev row.
        majority: each of the task's metrics for that prediction (fractions).
        random_mean, random_sd: each metric's mean and standard deviation over ``random_draws``
            uniformly random predictions.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    n_dev: int
    majority_label: str
    majority: dict[str, float]
    random_mean: dict[str, float]
    random_sd: dict[str, float]
    random_draws: int


class BaselinesRecord(StageRecord):
    """``baselines/baselines.json``: every task's :class:`Baseline`, in the study's task order."""

    KIND: ClassVar[str] = "baselines"
    FILE: ClassVar[str] = "baselines.json"

    baselines: list[Baseline]

    def by_task(self) -> dict[str, Baseline]:
        """The baselines keyed by task name."""
        return {b.task: b for b in self.baselines}

    def majority(self, task: str, metric: str | None) -> float | None:
        """The majority-class prediction's ``metric`` on ``task`` (None when either is unknown)."""
        found = self.by_task().get(task)
        return None if found is None or metric is None else found.majority.get(metric)


class SanityCheck(BaseModel):
    """One overfitting check: could the method drive the training loss of a few rows under ``threshold``?

    Attributes:
        epochs_run: epochs trained before the loss fell under the threshold (or ``max_epochs``).
        final_loss: the last training loss logged.
        passed: ``final_loss < threshold``; ``reason`` says why not when the run itself failed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    method: str
    epochs_run: int
    final_loss: float
    threshold: float
    passed: bool
    reason: str | None = None


class SanityRecord(StageRecord):
    """``sanity/sanity.json``: the settings of the checks and one :class:`SanityCheck` per (task, method), in grid order."""

    KIND: ClassVar[str] = "sanity"
    FILE: ClassVar[str] = "sanity.json"

    settings: dict[str, JsonValue]
    results: list[SanityCheck]

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(r.passed for r in self.results)
