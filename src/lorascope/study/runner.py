"""``run_study``: every stage of a study in order, resumable, with wall time per stage.

A study folder belongs to one configuration (``config.yaml``): rerunning with other settings is an
error naming the keys, as long as the folder holds results made with the stored settings. A
folder that holds nothing but bookkeeping (``config.yaml``, ``timings.json``: the first stage
failed, or the run was killed before any result was written) takes the new settings. Bad input
found by a stage leaves the folder as this run found it (or no folder) when no stage wrote a result.

One study runs in a folder at a time: ``run_study`` holds the folder's lock
(:class:`~lorascope.artifacts.FolderLock`) from before it writes ``config.yaml`` until it returns;
a second run in the same folder is refused at once, naming the holder's pid.

``timings.json`` is also the study's journal: each invocation records the stages it plans, the one
running (so that a killed run is seen as interrupted), the ones finished, and the one that failed.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from rich.console import Console

from lorascope.artifacts import (
    CONFIG_FILE,
    LOCK_FILE,
    FolderLock,
    atomic_write,
    check_output_path,
    dump_yaml_atomic,
    stored_config,
    write_json,
)
from lorascope.config import check_report_to, config_to_dict, diff_configs
from lorascope.errors import ConfigError, LorascopeError
from lorascope.run_folder import RunFolder
from lorascope.study.config import StudyConfig
from lorascope.study.context import StageContext
from lorascope.study.executor import check_executor, make_executor
from lorascope.study.journal import load_timings
from lorascope.study.layout import StudyLayout
from lorascope.study.stages import STAGE_FUNCS
from lorascope.study.units import train_units

# Keys that choose what to run now, not what the results are: changing them never invalidates.
_NON_RESULT_KEYS = ("stages", "name", "executor")
# Stages that load the study's base model (the others read data or artifacts only).
_MODEL_STAGES = frozenset({"sanity", "hpo", "train", "drift", "weights", "forgetting", "probes", "bench"})


def _bookkeeping(out: Path) -> list[Path]:
    """A study folder's bookkeeping, not results: what it is, when its stages ran, who holds it."""
    return [out / CONFIG_FILE, StudyLayout(out).timings, out / LOCK_FILE]


def holds_results(out: Path) -> bool:
    """Whether a study folder holds any file besides its bookkeeping (``config.yaml``, ``timings.json``
    and the lock); empty folders do not count."""
    bookkeeping = set(_bookkeeping(out))
    return any(p.is_file() and p not in bookkeeping for p in out.rglob("*"))


def check_study_config(out: Path, cfg: StudyConfig) -> None:
    """A study folder belongs to one configuration; a different one is an error naming the keys.

    Writes ``config.yaml`` when the folder has none, or replaces it when the folder holds no
    results (nothing could be inconsistent with the new settings), or when only the settings
    that choose what to run now differ: the stored ``stages`` are those of the latest run, which
    ``study status`` shows.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {out}: exists and is not a folder; choose another 'out'")
    full = config_to_dict(cfg)
    current = {k: v for k, v in full.items() if k not in _NON_RESULT_KEYS}
    try:
        stored = stored_config(out)
    except yaml.YAMLError as err:
        if holds_results(out):
            raise ConfigError(f"{out / CONFIG_FILE}: not valid YAML ({getattr(err, 'problem', None) or err}); "
                              "the folder's results cannot be matched to a configuration: use another 'out' "
                              "folder or remove this one") from None
        stored = None  # nothing to protect: the new settings take the folder
    if stored is not None:
        diffs = diff_configs({k: v for k, v in _with_defaults(stored).items() if k not in _NON_RESULT_KEYS}, current)
        if diffs and holds_results(out):
            raise ConfigError(f"{out}: holds a study with a different configuration ({'; '.join(diffs[:4])}); "
                              "use another 'out' folder or remove this one")
        if stored == full:
            return
    out.mkdir(parents=True, exist_ok=True)
    dump_yaml_atomic(full, out / CONFIG_FILE)


def _with_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored study config with every setting added since it was written at its default.

    A setting's default is what the code did before the setting existed, so a folder written by
    an older lorascope stays resumable; a stored config that no longer validates is compared as is.
    """
    try:
        return config_to_dict(StudyConfig.model_validate(stored))
    except ValidationError:
        return stored


def check_inputs(cfg: StudyConfig) -> None:
    """What the stages would otherwise find wrong one by one, after the folder exists: tasks, the
    base model (when a stage loads it) and every unit's training settings."""
    from lorascope.data.tasks import get_task
    from lorascope.models.registry import resolve_model

    check_executor(cfg.executor)  # before any folder exists: a Ray address that does not answer would hang
    if set(cfg.stages) - {"report"}:  # the report reads artifacts only: it may run where the inputs are gone
        for task in cfg.tasks:
            get_task(cfg.task_ref(task))
    if _MODEL_STAGES & set(cfg.stages):
        resolve_model(cfg.model)
    for task in cfg.tasks:
        for method in cfg.methods:
            check_report_to(cfg.train_config(task, method, cfg.seeds[0]).report_to)


def run_study(cfg: StudyConfig, *, only: dict[str, str] | None = None, console: Console | None = None) -> Path:
    """Run ``cfg.stages``; returns the study folder.

    A unit that fails (a crash, a diverged run) is recorded and the study goes on: see
    :func:`failed_units` for what failed.

    Raises:
        FolderBusy: another study run holds the folder (a :class:`LorascopeError`).
        LorascopeError: bad input; when no stage wrote a result, the folder this run created is
            removed, and a folder that existed is left as it was found.
    """
    console = console or Console()
    out = Path(cfg.out)
    check_inputs(cfg)
    check_output_path(out, what="out:")  # a study may be laid out in the current folder (out: .)
    existed = out.exists()
    out.mkdir(parents=True, exist_ok=True)
    # Taken before anything is written: two runs in one folder would train the same units into the
    # same .partial folders.
    try:
        lock = FolderLock.acquire(out, user="another study run")
    except LorascopeError:
        if not existed:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if still empty: a run that took the folder meanwhile has its lock file in it
        raise
    with lock:
        found = {path: _read_bytes(path) for path in _bookkeeping(out)[:2]}  # config.yaml, timings.json
        try:
            check_study_config(out, cfg)
            _run_stages(cfg, out, only or {}, console)
            if not only:  # a slice (--only) logs nothing: the study's results are whole once every slice ran
                from lorascope.trackers import log_study_results, study_report_to

                log_study_results(out, study_report_to(cfg), console=console)
        except LorascopeError:
            if not holds_results(out):
                if not existed:
                    shutil.rmtree(out, ignore_errors=True)
                else:
                    _put_back(found)
            raise
    return out


def _read_bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _put_back(found: dict[Path, bytes | None]) -> None:
    """Restore bookkeeping files to what they held (or their absence) before this run."""
    for path, data in found.items():
        if data is None:
            path.unlink(missing_ok=True)
        else:
            with atomic_write(path) as tmp:
                tmp.write_bytes(data)


def _run_stages(cfg: StudyConfig, out: Path, only: dict[str, str], console: Console) -> None:
    timings_path = StudyLayout(out).timings
    timings = load_timings(timings_path)
    invocation: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "only": only,
                                  "planned": list(cfg.stages), "stages": {}}
    timings["invocations"].append(invocation)
    ctx = StageContext(cfg=cfg, out=out, console=console, only=only, executor=make_executor(cfg.executor))
    try:
        for i, stage in enumerate(cfg.stages, 1):
            console.rule(f"[bold]stage {i}/{len(cfg.stages)}: {stage}")
            # Written before the stage starts: a run killed from here on leaves the stage named.
            invocation["running"] = stage
            write_json(timings_path, timings)
            t0 = time.perf_counter()
            try:
                STAGE_FUNCS[stage](ctx)
            except Exception as exc:  # recorded, then raised as it was (a KeyboardInterrupt leaves "running")
                del invocation["running"]
                error = str(exc) if isinstance(exc, LorascopeError) else f"{exc.__class__.__name__}: {exc}"
                invocation["failed"] = {"stage": stage, "error": first_line(error)}
                with contextlib.suppress(OSError):  # a full disk: the stage's own error is the one to report
                    write_json(timings_path, timings)
                raise
            del invocation["running"]
            seconds = round(time.perf_counter() - t0, 2)
            invocation["stages"][stage] = seconds
            timings["total_s"][stage] = round(timings["total_s"].get(stage, 0.0) + seconds, 2)
            write_json(timings_path, timings)
    finally:
        ctx.executor.close()


def first_line(text: str, limit: int = 160) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def failed_units(cfg: StudyConfig, out: Path, only: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """``(unit, first line of its error)`` for every training unit of the slice ``only`` that has no
    successful record, when the study runs its ``train`` stage (else none).

    Read from the units' records: a crash (``status: failed`` with its traceback), a diverged run
    (``status: failed``, its reason), a record that cannot be read, or none at all (the record
    itself could not be written, e.g. on a full disk).
    """
    if "train" not in cfg.stages:
        return []
    failed = []
    for unit in train_units(cfg, only, out):
        folder = unit.folder(out)
        if not RunFolder.holds_run(folder):
            failed.append((unit.name, "no record written (see the output above)"))
            continue
        try:
            record = RunFolder(folder).record()
        except ConfigError as err:
            failed.append((unit.name, first_line(str(err))))
            continue
        if not record.ok:
            failed.append((unit.name, first_line(record.reason or "failed")))
    return failed
