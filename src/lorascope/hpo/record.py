"""``hpo.json`` as a typed value: :class:`HpoRecord` (see :mod:`lorascope.records`).

What :func:`~lorascope.hpo.search.run_hpo` returns and writes, and what the study reads its tuned
settings from: the search's settings, every trial of the study (from all workers) and the best.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import JsonValue

from lorascope.records import RecordPart, StageRecord


class TrialRecord(RecordPart):
    """One trial: Optuna's state and value, the sampled ``params``, and what the trial's run recorded
    (``status``, ``reason`` when it failed or diverged, ``dev`` metrics, ``worker``, run ``folder``)."""

    number: int
    state: str
    value: float | None
    params: dict[str, JsonValue]
    status: str | None = None
    reason: str | None = None
    dev: dict[str, float] | None = None
    duration_s: float | None = None
    worker: str | None = None
    folder: str | None = None


class BestTrial(RecordPart):
    """The best complete trial: its number, dev value and every searched setting (fixed ones included)."""

    number: int
    value: float
    params: dict[str, JsonValue]


class HpoRecord(StageRecord):
    """``hpo.json`` of one worker's folder.

    Attributes:
        storage: the Optuna storage URL, any password masked.
        counts: trial state (lower case) -> trials in it, states with none left out.
        space: the search space as searched; ``train``: the fixed training settings.
        best, best_config: the best trial and the path of its ``best_config.yaml`` (None before any completed).
    """

    KIND: ClassVar[str] = "hpo"
    FILE: ClassVar[str] = "hpo.json"

    study: str
    storage: str
    task: str
    method: str
    model: str
    main_metric: str
    n_trials: int
    seed: int
    counts: dict[str, int]
    space: dict[str, JsonValue]
    train: dict[str, JsonValue]
    best: BestTrial | None
    best_config: str | None
    trials: list[TrialRecord]
