"""CLI commands of the study runner: ``study run``, ``study plan``, ``study status``, ``study export``, ``report``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from lorascope.cli.common import (
    Command,
    command_class,
    console,
    json_option,
    print_error,
    print_json,
    quiet_libraries,
    settings_argument,
    settings_arguments,
    user_errors,
)
from lorascope.run_folder import RunFolder
from lorascope.study.config import StudyConfig
from lorascope.study.layout import StudyLayout

study_app = typer.Typer(help="Run a whole study from a YAML file, resumably; show its progress.", no_args_is_help=True)

# Exit status of `study run` when it finished but some training units failed (bad input is 2).
EXIT_UNITS_FAILED = 1
# Failed units named in the summary line; the rest are counted.
_NAMED_FAILURES = 3


# The commands that take a study file and its key=value settings: their help lists every key.
_STUDY_SETTINGS = command_class(
    StudyConfig, settings_file="path",
    intro="Study settings: each a key of the study file, or key=value, which wins over the file. Every key, with its type "
          "and default:")


@study_app.command("run", cls=_STUDY_SETTINGS)
@user_errors
def study_run(
    path: Path = typer.Argument(..., help="Study YAML (configs/studies/*.yaml)."),
    only: Optional[str] = typer.Option(None, help="Run a slice, e.g. task=sst2,method=lora."),
    overrides: Optional[list[str]] = settings_argument("out=runs/x seeds=1,2", what="Study settings"),
) -> None:
    """Run every stage of a study (rerun the same command to resume after a crash or kill).

    Exit status:

    0: every training unit succeeded.

    1: some failed (crashed or diverged); the others' results are kept, and a rerun retries crashed units.

    2: bad input, or another study run holds the folder.

    130: interrupted.

    Example:

    lorascope study run configs/studies/quickstart.yaml --only task=sst2,method=lora out=runs/x
    """
    quiet_libraries()
    from lorascope.study import load_study, run_study
    from lorascope.study.runner import failed_units
    from lorascope.study.units import parse_only, train_units

    cfg = load_study(path, settings_arguments(StudyConfig, overrides))
    selected = parse_only(only, cfg)
    out = run_study(cfg, only=selected, console=console)
    failures = failed_units(cfg, out, selected)
    report = StudyLayout(out).report / "report.html"
    where = f"report at {report}" if report.is_file() else str(out)
    if not failures:
        console.print(f"[bold green]study complete[/]: {where}" if report.is_file() else f"[bold green]stages done[/]: {out}")
        return
    console.print(f"[bold yellow]study finished with failed units[/]: {where}")
    print_error(failure_summary(failures, len(train_units(cfg, selected, out)), StudyLayout(out).train))
    raise typer.Exit(EXIT_UNITS_FAILED)


@study_app.command("plan", cls=_STUDY_SETTINGS)
@user_errors
def study_plan(
    path: Path = typer.Argument(..., help="Study YAML (configs/studies/*.yaml)."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                   help="Time a few training steps of each model/method/max_length here (cached); "
                                        "without it, times come from FLOPs."),
    recalibrate: bool = typer.Option(False, help="Forget this machine's cached timings and calibrate afresh (a "
                                                 "calibration taken while other work loaded the machine misleads every "
                                                 "later plan)."),
    json_out: bool = json_option(),
    overrides: Optional[list[str]] = settings_argument("seeds=1,2,3 device=cpu", what="Study settings"),
) -> None:
    """What a study will run and cost, before it runs: every unit with its parameters, peak memory and time,
    what is done already, and whether the verdicts can decide with the seeds given.

    Example:

    lorascope study plan configs/studies/quickstart.yaml seeds=42,1337,2024
    """
    quiet_libraries()
    from lorascope.study.config import load_study
    from lorascope.study.plan import forget_calibration, plan_lines, plan_study

    cfg = load_study(path, settings_arguments(StudyConfig, overrides), here=False)
    if recalibrate:
        forget_calibration()
    note = None if json_out else (lambda line: console.print(f"  {line}", style="dim", highlight=False, soft_wrap=True))
    plan = plan_study(cfg, calibrate_here=calibrate, progress=note)
    if json_out:
        print_json(plan.to_dict())
        return
    for line in plan_lines(plan):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _awaiting_selection(cfg: StudyConfig, folder: Path) -> list[tuple[str, str, int]]:
    """(task, method kind, units) for every swept method whose selection is not made yet (``sweep_seeds``)."""
    from lorascope.study.units import selected_labels

    if not cfg.sweep_seeds:
        return []
    extra = len([s for s in cfg.seeds if s not in cfg.sweep_seeds])
    out = []
    for task in cfg.tasks:
        chosen = set(selected_labels(cfg, task, folder))
        out += [(task, kind, extra) for kind, labels in cfg.sweep_labels().items() if extra and not chosen & set(labels)]
    return out


def failure_summary(failures: list[tuple[str, str]], total: int, records: Path) -> str:
    """One line: how many units failed, the first few with the first line of their error, where the records are."""
    named = "; ".join(f"{name} ({why})" for name, why in failures[:_NAMED_FAILURES])
    more = f"; and {len(failures) - _NAMED_FAILURES} more" if len(failures) > _NAMED_FAILURES else ""
    return (f"{len(failures)} of {total} training units failed: {named}{more}; records in {records} "
            "(a rerun retries crashed units)")


@study_app.command("status", cls=Command)
@user_errors
def study_status(folder: Path = typer.Argument(..., help="A study's output folder.")) -> None:
    """Progress of a study: every unit and stage the study runs, done / failed / skipped / running / pending.

    Example:

    lorascope study status runs/quickstart
    """
    from lorascope.artifacts import lock_holder
    from lorascope.study.journal import load_timings
    from lorascope.study.units import train_units

    folder = study_folder(folder)
    cfg, stored = _read_study(folder)
    layout = StudyLayout(folder)
    holder = lock_holder(folder)
    try:
        journal = load_timings(layout.timings)["invocations"] if layout.timings.is_file() else []
    except (OSError, ValueError, KeyError):  # a journal that cannot be read tells nothing; the artifacts still do
        journal = []
    # Folders written before config.yaml kept the stages: what the journal saw run, else the defaults.
    ran = {stage for inv in journal for stage in inv.get("planned") or inv.get("stages") or {}}
    planned = set(cfg.stages) if "stages" in stored or not ran else ran
    outcome = _Journal(journal, holder is not None)
    table = Table(title=f"study {folder}")
    for col in ("unit", "status", "detail"):
        table.add_column(col)
    counts = dict.fromkeys(("done", "failed", "pending", "running", "interrupted"), 0)

    def row(name: str, status: str, detail: str = "") -> None:
        table.add_row(name, _STYLE.get(status, "{}").format(status), detail)

    def single(stage: str, done: bool, covers: Callable[[dict[str, Any]], bool] = lambda only: True) -> tuple[str, str]:
        return ("done", "") if done else outcome.of(stage, covers)

    for stage, path in (("sanity", layout.sanity), ("baselines", layout.baselines)):
        if stage in planned or path.is_file():
            row(stage, *single(stage, path.is_file()))
    if "hpo" in planned or (folder / "hpo").is_dir():
        for task in cfg.tasks:
            for method in cfg.methods:
                found = (layout.hpo(task, method) / "hpo.json").is_file()
                row(f"hpo {task}-{method}", *single("hpo", found, _covers(task=task, method=method)))
    units = train_units(cfg, out=folder)
    if "train" in planned or any(u.folder(folder).exists() or _partial(u.folder(folder)).exists() for u in units):
        for unit in units:
            status, detail = _unit_status(unit, folder, outcome, holder is not None)
            counts[status] += 1
            row(f"train {unit.name}", status, detail)
        for task, kind, n in _awaiting_selection(cfg, folder):
            counts["pending"] += n
            row(f"train {task}-{kind} ×{n}", "pending", "the other seeds of the point the sweep seeds select")
    per_task = (("drift", layout.drift, "drift.json"), ("weights", layout.weights, "weights.json"),
                ("forgetting", layout.forgetting, "forgetting.json"), ("probes", layout.probes, "probes.json"))
    for stage, where, name in per_task:
        if stage not in planned and not any((where(t) / name).is_file() for t in cfg.tasks):
            continue  # a stage the study does not run
        skipped = _skipped(layout, stage)
        for task in cfg.tasks:
            if (where(task) / name).is_file():
                row(f"{stage} {task}", "done")
            elif task in skipped:
                row(f"{stage} {task}", "skipped", str(skipped[task]))
            else:
                row(f"{stage} {task}", *outcome.of(stage, _covers(task=task), nothing="nothing to measure "
                                                   "(the run's output says why)"))
    for stage, path in (("bench", layout.bench_json), ("report", layout.report / "report.html")):
        if stage in planned or path.is_file():
            row(stage, *single(stage, path.is_file()))
    console.print(table)
    console.print(", ".join(f"{k}: {v}" for k, v in counts.items() if v or k in ("done", "failed", "pending"))
                  + " training units")
    if holder:
        console.print(f"a study run is in progress in this folder ({holder})")


_STYLE = {"done": "[green]{}[/]", "failed": "[red]{}[/]", "skipped": "[yellow]{}[/]",
          "interrupted": "[yellow]{}[/]", "running": "[cyan]{}[/]"}


class _Journal:
    """What the study's journal (``timings.json``) says of a stage: the newest invocation that ran it
    for the unit in question decides."""

    def __init__(self, invocations: list[dict[str, Any]], held: bool) -> None:
        self.invocations = invocations
        self.held = held  # a study run holds the folder now: the newest invocation is live

    def of(self, stage: str, covers: Callable[[dict[str, Any]], bool], nothing: str = "") -> tuple[str, str]:
        """(status, detail): ``skipped`` (the stage finished and wrote nothing for it; ``nothing``
        says why), ``failed``, ``running``, ``interrupted`` or ``pending``."""
        for age, inv in enumerate(reversed(self.invocations)):
            if not covers(inv.get("only") or {}):
                continue
            if stage in (inv.get("stages") or {}):
                return "skipped", nothing
            failed = inv.get("failed") or {}
            if failed.get("stage") == stage:
                return "failed", str(failed.get("error", ""))
            if inv.get("running") == stage:
                if self.held and age == 0:
                    return "running", ""
                return "interrupted", "the run stopped during this stage; rerun to resume"
        return "pending", ""


def _covers(**unit: str) -> Callable[[dict[str, Any]], bool]:
    """Whether an invocation's ``--only`` slice included ``unit`` (task, method, seed as given)."""
    return lambda only: all(str(only.get(k, v)) == str(v) for k, v in unit.items())


def _partial(folder: Path) -> Path:
    return folder.with_name(folder.name + ".partial")


def _unit_status(unit: Any, folder: Path, outcome: _Journal, held: bool) -> tuple[str, str]:
    from lorascope.errors import ConfigError
    from lorascope.metrics import format_metric
    from lorascope.study.runner import first_line

    f = unit.folder(folder)
    if RunFolder.holds_run(f):
        try:
            m = RunFolder(f).record()
        except ConfigError as err:
            return "failed", str(err)
        if not m.ok:
            return "failed", first_line(m.reason or "")
        # 0.0 is a value (MCC of a constant predictor), None is none (written –); MCC stays on −1..1.
        return "done", f"{m.main_metric} {format_metric(m.main_metric, m.main_value)}"
    if _partial(f).exists():
        return ("running" if held else "interrupted"), "partial (resumes from its last checkpoint)"
    status, _ = outcome.of("train", _covers(task=unit.task, method=unit.method, seed=unit.seed))
    if status == "skipped":  # the stage finished without a record of this unit: writing it failed
        return "failed", "no record written (see the run's output)"
    return "pending", ""  # not started, whatever became of the stage


def _skipped(layout: StudyLayout, stage: str) -> dict[str, str]:
    """``{task: why}`` from the stage's ``skipped.json``; {} without one, or where it cannot be read (the
    status shows what the artifacts say, and an unreadable note says nothing)."""
    from lorascope.errors import DataError
    from lorascope.study.units import read_skipped

    try:
        return read_skipped(layout.skipped(stage))
    except DataError:
        return {}


@study_app.command("export", cls=Command)
@user_errors
def study_export(folder: Path = typer.Argument(..., help="A study's output folder."),
                 dest: Path = typer.Argument(..., help="A new folder for the records.")) -> None:
    """Copy a study's records, without weights or cached representations, to publish them:
    `lorascope report DEST` rebuilds the same report from the copy.

    Example:

    lorascope study export runs/quickstart docs/results/quickstart/records
    """
    from lorascope.study.export import export_records

    folder = study_folder(folder)
    read_study_folder(folder)
    files = export_records(folder, dest)
    console.print(f"exported {len(files)} records to {dest}")


@user_errors
def report(folder: Path = typer.Argument(..., help="A study's output folder.")) -> None:
    """Build report.md, report.html and figures from a study's saved artifacts.

    Example:

    lorascope report runs/quickstart
    """
    quiet_libraries()
    from lorascope.report import build_report

    folder = study_folder(folder)
    read_study_folder(folder)
    console.print(f"report: {build_report(folder)}")


def study_folder(folder: Path) -> Path:
    """``folder`` as the user meant it: ``~`` expanded, and a relative path that is not found from the
    process's working directory looked up from the shell's (``$PWD``, which keeps the symbolic links
    the user ``cd``-ed through, where ``..`` differs)."""
    folder = folder.expanduser()
    if folder.is_absolute() or folder.exists():
        return folder
    shell_cwd = os.environ.get("PWD", "")
    try:
        same = os.path.isabs(shell_cwd) and os.path.samefile(shell_cwd, os.getcwd())
    except OSError:
        same = False
    candidate = Path(os.path.normpath(os.path.join(shell_cwd, folder))) if same else folder
    return candidate if candidate.exists() else folder


def read_study_folder(folder: Path) -> StudyConfig:
    """The :class:`~lorascope.study.StudyConfig` stored in a study folder.

    Raises:
        ConfigError: ``folder`` is not a study folder: missing, a file, no ``config.yaml``, or a
            ``config.yaml`` that is not a study's (a training run's, say), naming what is wrong.
    """
    return _read_study(folder)[0]


def _read_study(folder: Path) -> tuple[StudyConfig, dict[str, Any]]:
    """(the study config, ``config.yaml`` as stored) of a study folder; see :func:`read_study_folder`."""
    from lorascope.config import build_config, load_yaml
    from lorascope.errors import ConfigError
    from lorascope.study import StudyConfig

    if not folder.is_dir():
        where = "" if folder.is_absolute() else f" in {Path.cwd()}"
        raise ConfigError(f"{folder}: not a study folder ({'a file' if folder.exists() else 'no such folder' + where})")
    cfg_path = folder / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{folder}: not a study folder (no config.yaml)")
    stored = load_yaml(cfg_path, what="study config")
    try:
        return build_config(StudyConfig, stored, {"name": folder.name}, source="config.yaml"), stored
    except ConfigError as err:
        raise ConfigError(f"{folder}: not a study folder ({err})") from None


def register(app: typer.Typer) -> None:
    """Add the ``study`` command group and the ``report`` command to ``app``."""
    app.add_typer(study_app, name="study")
    app.command(cls=Command)(report)
