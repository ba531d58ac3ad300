"""Did the compared models learn their task? The statement every view of a comparison shares.

Differences between models that did not learn (drift, weight updates, forgetting) compare two
barely trained classifiers: their tests may reach any p-value and their effect sizes any size,
and neither says how LoRA and full fine-tuning differ. So the report and the standalone lens
commands ask this module first, and where the answer is "did not learn" they give one statement
for the task instead of p-values and effect sizes.

The rule is the drift comparison's (``lorascope.drift.compare.learning_caveats``), applied to the
runs' own ``metrics.json`` so that every lens, and a comparison of a single seed pair (which has
no verdicts to mark), gets the same answer: a compared method whose mean main metric is not
``LEARNED_MARGIN`` above the majority baseline, or a run that predicts one label for every dev
example, makes the comparison not interpretable. One seed at majority level among learning ones
is listed, not fatal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lorascope.drift.record import DriftRecord
from lorascope.metrics import format_metric, metric_name, versus_majority
from lorascope.report.collect import StudyRecords
from lorascope.run_folder import RunRecord
from lorascope.train.learned import LEARNED_MARGIN, at_majority_level
from lorascope.variants import FULL, display_name, recorded_primary


@dataclass
class Learning:
    """What the runs of one comparison learned.

    Attributes:
        metric: the task's main metric (None when no run names it).
        reasons: why the comparison is not interpretable, one clause each; empty when it is.
        weak_runs: single runs at majority level, each with where it stands (listed, not fatal alone).
    """

    metric: str | None
    reasons: list[str] = field(default_factory=list)
    weak_runs: list[str] = field(default_factory=list)

    @property
    def learned(self) -> bool:
        return not self.reasons

    def statement(self) -> str:
        """Why nothing is tested, in one sentence (empty when the models learned)."""
        if self.learned:
            return ""
        return "the models did not learn the task: " + "; ".join(self.reasons)


def reference_of(drift: DriftRecord) -> str:
    """The full fine-tuning label a saved drift analysis compares with: the point a sweep's rule selected
    (``selection.full.label``), else the recorded pair's second label, else ``full``."""
    selected = (drift.selection or {}).get(FULL)
    pair = drift.config.get("pair") or []
    return str(selected.label if selected else (pair[1] if isinstance(pair, list) and len(pair) == 2 else FULL))


def method_display(label: str, drift: DriftRecord | None = None) -> str:
    """How the report names a method: ``LoRA``, ``full fine-tuning``, ``LoRA (lora_r64)`` or, for a
    full fine-tuning variant such as a sweep's point, ``full fine-tuning (full_lr2em05)``."""
    settings = None if drift is None else drift.variants.get(label)
    kind = settings.get("method") if isinstance(settings, dict) else None
    if kind is None and drift is not None and label == reference_of(drift):
        kind = FULL
    if kind == FULL and label != FULL:
        return f"full fine-tuning ({label})"
    return display_name(label)


def assess(records: list[RunRecord], compared: tuple[str, ...], majority: float | None = None,
           recorded: str | None = None, drift: DriftRecord | None = None) -> Learning:
    """Whether the runs of ``compared`` labels learned enough for their comparison to mean anything.

    Args:
        records: the task's runs (by their ``label``); failed runs are ignored.
        compared: the labels compared, e.g. ``("lora", "full")``.
        majority: the majority-class baseline of the main metric on the runs' dev rows; default:
            the mean of what each run's learning check recorded.
        recorded: a ``not_interpretable`` note an analysis already saved (drift.json); it stands
            when these records show nothing (e.g. runs whose ``metrics.json`` has no learning check).
        drift: the saved drift analysis, to name its methods (a sweep's full fine-tuning point as such).
    """
    ok = [r for r in records if r.ok and r.label in compared]
    metric = next((r.main_metric for r in ok if r.main_metric), None)
    out = Learning(metric)
    for label in compared:
        runs = sorted((r for r in ok if r.label == label), key=lambda r: r.seed or 0)
        values = [v for v in (r.main_value for r in runs) if v is not None]
        bases = [b for b in ((r.learning_check or {}).get("majority_baseline") for r in runs) if b is not None]
        base = majority if majority is not None else (float(np.mean(bases)) if bases else None)
        constant = [str(r.seed) for r in runs if ((r.learning_check or {}).get("predicted_share") or 0) >= 1.0]
        if constant:
            # One clause for all of a method's runs that answer one label, not one per seed.
            which = f"seed {constant[0]} predicts" if len(constant) == 1 else f"seeds {', '.join(constant)} predict"
            out.reasons.append(f"{method_display(label, drift)} {which} one label for every dev example")
        if base is None or not values:
            continue
        for r in runs:
            v = r.main_value
            if v is not None and at_majority_level(v, base):
                out.weak_runs.append(f"{label} seed {r.seed} ({metric_name(metric)} {format_metric(metric, v)}, "
                                     f"{versus_majority(metric, v, base, LEARNED_MARGIN)})")
        mean = float(np.mean(values))
        if at_majority_level(mean, base):
            seeds = f"{len(values)} seed{'s' if len(values) != 1 else ''}"
            out.reasons.append(f"{method_display(label, drift)}'s mean dev {metric_name(metric)} over {seeds}, {format_metric(metric, mean)}, "
                               f"is {versus_majority(metric, mean, base, LEARNED_MARGIN)}")
    if recorded and not out.reasons:
        # drift.json's note reads "not interpretable: the models did not learn the task (…)": keep the "…".
        inner = recorded.removeprefix("not interpretable: ").removeprefix("the models did not learn the task")
        out.reasons.append(inner.strip().removeprefix("(").removesuffix(")") or recorded)
    return out


def majority_of(data: StudyRecords, task: str, metric: str | None) -> float | None:
    """The baselines stage's majority-class ``metric`` on ``task`` in a collected study (None when not run)."""
    return data.baselines.majority(task, metric)


def task_majority(data: StudyRecords, task: str) -> float | None:
    """The majority-class baseline of the task's main metric, with :func:`assess`'s precedence: the
    baselines stage's, else the mean of what the task's runs' learning checks recorded (None: neither)."""
    stage = majority_of(data, task, main_metric(data, task))
    if stage is not None:
        return stage
    bases = [float(b) for r in data.runs_of(task)
             for b in [(r.record.learning_check or {}).get("majority_baseline")] if b is not None]
    return float(np.mean(bases)) if bases else None


def main_metric(data: StudyRecords, task: str) -> str | None:
    """The task's main metric as its runs recorded it (None when no run of the task names it)."""
    return next((r.record.main_metric for r in data.runs_of(task) if r.record.main_metric), None)


def task_learning(data: StudyRecords, task: str, label: str | None = None) -> Learning:
    """:func:`assess` for one comparison of a collected study: ``label`` (default: the task's primary
    LoRA method) against the full fine-tuning it is compared with (a sweep's selected point), with the
    study's majority baseline and drift's own note."""
    drift = data.drift.get(task)
    primary = recorded_primary(drift.primary if drift else None)
    label = label or primary
    comparison = None if drift is None else drift.comparison if label == primary else drift.comparisons.get(label)
    majority = majority_of(data, task, main_metric(data, task))
    return assess([r.record for r in data.runs_of(task)], (label, reference_of(drift) if drift else FULL), majority,
                  comparison.not_interpretable if comparison else None, drift)


def not_learned(data: StudyRecords) -> dict[str, str]:
    """Task -> the statement why its primary comparison is not interpretable, for every such task of the study."""
    tasks = sorted({r.record.task for r in data.runs if r.record.task} | set(data.drift))
    out = {}
    for task in tasks:
        learning = task_learning(data, task)
        if not learning.learned:
            out[task] = learning.statement()
    return out


def comparison_learning(runs_folder: str | Path, compared: Sequence[tuple[str | None, str, int]], lora: str,
                        recorded: str | None = None, task: str | None = None) -> Learning:
    """:func:`assess` for a standalone analysis of the runs under ``runs_folder``.

    Args:
        compared: the analysis's own runs, each (the folder name where the analysis records it, else
            None; the label; the seed), so that only the runs it compared are judged.
        lora: the LoRA label compared with full fine-tuning.
        recorded: the analysis's own ``not_interpretable`` note, if it wrote one.
        task: only runs of this task (a folder may hold several tasks' runs with the same labels and seeds).
    """
    from lorascope.run_folder import RunFolder

    folders = {folder for folder, _, _ in compared if folder}
    pairs = {(label, seed) for _, label, seed in compared}
    records = []
    for folder in RunFolder.finished_under(runs_folder):
        record = folder.record()
        if (folders and folder.name not in folders) or (task and record.task != task):
            continue
        if (record.label, record.seed or 0) in pairs:
            records.append(record)
    return assess(records, (lora, FULL), recorded=recorded)
