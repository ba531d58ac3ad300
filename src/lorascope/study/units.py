"""The units of a study and where their artifacts live."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorascope.records import StageRecord
from lorascope.run_folder import RunFolder
from lorascope.study.config import StudyConfig
from lorascope.study.layout import StudyLayout
from lorascope.study.sweep import select_point


@dataclass(frozen=True)
class TrainUnit:
    """One (task, method, seed) training run of a study's grid."""

    task: str
    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.task}-{self.method}-s{self.seed}"

    def folder(self, out: Path) -> Path:
        return StudyLayout(out).run(self.name)


def train_units(cfg: StudyConfig, only: dict[str, str] | None = None, out: Path | None = None) -> list[TrainUnit]:
    """Every (task, method, seed) of the grid, restricted by ``only`` (e.g. {"task": "sst2"}).

    With ``sweep_seeds``, a sweep point is planned with those seeds only, and the point the selection
    rule chooses (read from the study folder ``out``, once its method's sweep-seed runs have finished)
    with every seed: the grid grows as the study learns which points it compares.
    """
    units = [TrainUnit(t, m, s) for t in cfg.tasks for m in cfg.methods for s in cfg.seeds_of(m)]
    if cfg.sweep_seeds and out is not None:
        units += [TrainUnit(t, label, s) for t in cfg.tasks for label in selected_labels(cfg, t, out)
                  for s in cfg.seeds if s not in cfg.sweep_seeds]
    for key, value in (only or {}).items():
        units = [u for u in units if str(getattr(u, key)) == value]
    return units


def selection_records(cfg: StudyConfig, task: str, study_folder: Path,
                       labels: list[str]) -> tuple[dict[str, list[dict[str, Any] | None]], bool]:
    """Each point's finished runs' selection records on the seeds every point is trained with (so each
    point is judged on as many seeds, whatever the chosen one adds later), and whether every one of
    those units has a record (finished, failed or diverged)."""
    records: dict[str, list[dict[str, Any] | None]] = {}
    complete = True
    for label in labels:
        for seed in cfg.seeds_of(label):
            folder = TrainUnit(task, label, seed).folder(study_folder)
            if not RunFolder.holds_run(folder):
                complete = False
                continue
            record = RunFolder(folder).record()
            if record.ok:
                records.setdefault(label, []).append(record.selection)
    return records, complete


def selected_labels(cfg: StudyConfig, task: str, study_folder: Path) -> list[str]:
    """The sweep points of ``task`` that the selection rule has chosen already: for each swept method
    whose every sweep-seed unit has a record, its chosen point (none for a method still training)."""
    chosen = []
    for own in cfg.sweep_labels().values():
        records, complete = selection_records(cfg, task, study_folder, own)
        if complete and any(records.values()):
            chosen.append(str(select_point(own, records)["label"]))
    return chosen


def parse_only(text: str | None, cfg: StudyConfig) -> dict[str, str]:
    """``task=sst2,method=lora`` -> {"task": "sst2", "method": "lora"}, each value one of the study's.

    A value the study does not have would select nothing and still run the stages that are not per unit
    (baselines, the report), so a typo is an error naming the values the study has.
    """
    from lorascope.errors import ConfigError

    if not text:
        return {}
    known = {"task": list(cfg.tasks), "method": list(cfg.methods), "seed": [str(s) for s in cfg.seeds]}
    out = {}
    for part in text.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or key not in known:
            raise ConfigError(f"--only '{part}': expected task=…, method=… or seed=… separated by commas")
        if value not in known[key]:
            raise ConfigError(f"--only {key}={value}: not a {key} of this study (it has {', '.join(known[key])})")
        out[key] = value
    return out


def read_skipped(path: Path) -> dict[str, str]:
    """A stage's ``skipped.json`` at ``path``: task -> why the stage skipped it ({} without the file).

    Raises:
        DataError: the file is not a JSON object of task -> reason, naming the file.
    """
    from pydantic import TypeAdapter

    from lorascope.artifacts import read_json
    from lorascope.errors import DataError

    if not path.is_file():
        return {}
    try:
        return TypeAdapter(dict[str, str]).validate_python(read_json(path))
    except (OSError, ValueError) as err:  # pydantic's ValidationError and a JSON decoding error are ValueErrors
        raise DataError(f"{path}: expected a JSON object of task -> why the stage skipped it "
                        f"({type(err).__name__})") from None


def note_skipped(path: Path, task: str, why: str | None) -> None:
    """Record in ``path`` (a stage's ``skipped.json``) why ``task`` was skipped; ``why=None`` clears it."""
    from lorascope.artifacts import write_json

    notes = read_skipped(path)
    if why is None and task not in notes:
        return
    if why is None:
        del notes[task]
    else:
        notes[task] = why
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, notes)


def analysis_unit(run: Callable[[Any, Path], StageRecord], cfg: Any, out: Path) -> tuple[StageRecord | None, str | None]:
    """One task's analysis (drift, a lens) on whichever executor runs it.

    Returns:
        (the result, None), or (None, why it was skipped) when the task has nothing this analysis
        can measure (``DataError``: no finished runs, no LoRA run, …).
    """
    from lorascope.errors import DataError

    try:
        return run(cfg, out), None
    except DataError as exc:
        return None, str(exc)
