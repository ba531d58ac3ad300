"""``run_study``: every stage of a study in order, resumable, with wall time per stage.

A study folder belongs to one configuration (``config.yaml``): rerunning with other settings is an
error naming the keys, as long as the folder holds results made with the stored settings. A
folder that holds nothing but ``config.yaml`` (the first stage failed, or the run was killed
before any result was written) takes the new settings. Bad input found by a stage leaves no
folder (or ``config.yaml``) behind that this run created without results in it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from lorascope.artifacts import CONFIG_FILE, read_json, stored_config, write_json
from lorascope.config import check_report_to, config_to_dict, diff_configs, dump_yaml
from lorascope.errors import ConfigError, LorascopeError
from lorascope.study.config import StudyConfig
from lorascope.study.context import StageContext
from lorascope.study.executor import make_executor
from lorascope.study.layout import StudyLayout
from lorascope.study.stages import STAGE_FUNCS

# Keys that choose what to run now, not what the results are: changing them never invalidates.
_NON_RESULT_KEYS = ("stages", "name", "executor")
# Stages that load the study's base model (the others read data or artifacts only).
_MODEL_STAGES = frozenset({"sanity", "hpo", "train", "drift", "weights", "forgetting", "probes", "bench"})


def holds_results(out: Path) -> bool:
    """Whether a study folder holds any file besides its ``config.yaml`` (empty folders do not count)."""
    return any(p.is_file() and p != out / CONFIG_FILE for p in out.rglob("*"))


def check_study_config(out: Path, cfg: StudyConfig) -> None:
    """A study folder belongs to one configuration; a different one is an error naming the keys.

    Writes ``config.yaml`` when the folder has none, or replaces it when the folder holds no
    results (nothing could be inconsistent with the new settings).
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {out}: exists and is not a folder; choose another 'out'")
    full = {k: v for k, v in config_to_dict(cfg).items() if k != "stages"}
    current = {k: v for k, v in full.items() if k not in _NON_RESULT_KEYS}
    stored = stored_config(out)
    if stored is not None:
        stored = {k: v for k, v in _with_defaults(stored).items() if k not in _NON_RESULT_KEYS}
        diffs = diff_configs(stored, current)
        if not diffs:
            return
        if holds_results(out):
            raise ConfigError(f"{out}: holds a study with a different configuration ({'; '.join(diffs[:4])}); "
                              "use another 'out' folder or remove this one")
    out.mkdir(parents=True, exist_ok=True)
    dump_yaml(full, out / CONFIG_FILE)


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

    if set(cfg.stages) - {"report"}:  # the report reads artifacts only: it may run where the inputs are gone
        for task in cfg.tasks:
            get_task(task)
    if _MODEL_STAGES & set(cfg.stages):
        resolve_model(cfg.model)
    for task in cfg.tasks:
        for method in cfg.methods:
            check_report_to(cfg.train_config(task, method, cfg.seeds[0]).report_to)


def run_study(cfg: StudyConfig, *, only: dict[str, str] | None = None, console: Console | None = None) -> Path:
    """Run ``cfg.stages``; returns the study folder.

    Raises:
        LorascopeError: bad input; the folder (or ``config.yaml``) this run created is removed
            when no stage wrote a result.
    """
    console = console or Console()
    out = Path(cfg.out)
    check_inputs(cfg)
    existed, had_config = out.exists(), (out / CONFIG_FILE).is_file()
    check_study_config(out, cfg)
    try:
        _run_stages(cfg, out, only or {}, console)
    except LorascopeError:
        if not holds_results(out):
            if not existed:
                shutil.rmtree(out, ignore_errors=True)
            elif not had_config:
                (out / CONFIG_FILE).unlink(missing_ok=True)
        raise
    return out


def _run_stages(cfg: StudyConfig, out: Path, only: dict[str, str], console: Console) -> None:
    timings_path = StudyLayout(out).timings
    timings = load_timings(timings_path)
    invocation = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "only": only, "stages": {}}
    timings["invocations"].append(invocation)
    ctx = StageContext(cfg=cfg, out=out, console=console, only=only, executor=make_executor(cfg.executor))
    try:
        for i, stage in enumerate(cfg.stages, 1):
            console.rule(f"[bold]stage {i}/{len(cfg.stages)}: {stage}")
            t0 = time.perf_counter()
            STAGE_FUNCS[stage](ctx)
            seconds = round(time.perf_counter() - t0, 2)
            invocation["stages"][stage] = seconds
            timings["total_s"][stage] = round(timings["total_s"].get(stage, 0.0) + seconds, 2)
            write_json(timings_path, timings)
    finally:
        ctx.executor.close()


def load_timings(path: Path) -> dict:
    """Wall time per stage, summed over every invocation (a killed and resumed study, a slice run with
    ``--only``), and the invocations themselves: ``{"total_s": {stage: s}, "invocations": [...]}``."""
    stored = read_json(path) if path.is_file() else {}
    if "total_s" not in stored:  # the older flat form {stage: seconds of the last invocation}
        stored = {"total_s": dict(stored), "invocations": []}
    return stored
