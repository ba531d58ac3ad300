"""CLI commands of the study runner: ``study run``, ``study status``, ``report``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lorascope.cli.common import console, quiet_libraries, user_errors
from lorascope.run_folder import RunFolder
from lorascope.study.layout import StudyLayout

study_app = typer.Typer(help="Run a whole study from a YAML file, resumably; show its progress.", no_args_is_help=True)


@study_app.command("run")
@user_errors
def study_run(
    path: Path = typer.Argument(..., help="Study YAML (configs/studies/*.yaml)."),
    only: Optional[str] = typer.Option(None, help="Run a slice, e.g. task=sst2,method=lora."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Study settings as key=value (e.g. out=runs/x).", show_default=False),
) -> None:
    """Run every stage of a study (rerun the same command to resume after a crash or kill)."""
    quiet_libraries()
    from lorascope.config import parse_overrides
    from lorascope.study import load_study, run_study
    from lorascope.study.units import parse_only

    cfg = load_study(path, parse_overrides(overrides or []))
    out = run_study(cfg, only=parse_only(only), console=console)
    report = StudyLayout(out).report / "report.html"
    if report.is_file():
        console.print(f"[bold green]study complete[/]: report at {report}")
    else:
        console.print(f"[bold green]stages done[/]: {out}")


@study_app.command("status")
@user_errors
def study_status(folder: Path = typer.Argument(..., help="A study's output folder.")) -> None:
    """Progress of a study: every unit, done / failed / pending."""
    from lorascope.study.units import train_units

    cfg = read_study_folder(folder)
    table = Table(title=f"study {folder}")
    for col in ("unit", "status", "detail"):
        table.add_column(col)
    counts = {"done": 0, "failed": 0, "pending": 0, "running": 0}
    for unit in train_units(cfg):
        f = unit.folder(folder)
        if RunFolder.holds_run(f):
            m = RunFolder(f).record()
            status = "done" if m.ok else "failed"
            detail = f"{m.main_metric} {100 * (m.main_value or float('nan')):.1f}" if m.ok else (m.reason or "")
        elif f.with_name(f.name + ".partial").exists():
            status, detail = "running", "partial (resumes from its last checkpoint)"
        else:
            status, detail = "pending", ""
        counts[status] += 1
        table.add_row(f"train {unit.name}", {"done": "[green]done[/]", "failed": "[red]failed[/]"}.get(status, status), detail)
    layout = StudyLayout(folder)
    per_task = (("drift", layout.drift, "drift.json"), ("weights", layout.weights, "weights.json"),
                ("forgetting", layout.forgetting, "forgetting.json"), ("probes", layout.probes, "probes.json"))
    for stage, where, name in per_task:
        if stage not in cfg.stages and not any((where(t) / name).is_file() for t in cfg.tasks):
            continue  # a lens the study does not run
        for task in cfg.tasks:
            done = (where(task) / name).is_file()
            table.add_row(f"{stage} {task}", "[green]done[/]" if done else "pending", "")
    for name, path in (("sanity", layout.sanity), ("baselines", layout.baselines), ("bench", layout.bench_json),
                       ("report", layout.report / "report.html")):
        table.add_row(name, "[green]done[/]" if path.is_file() else "pending", "")
    console.print(table)
    console.print(", ".join(f"{k}: {v}" for k, v in counts.items()) + " training units")


@user_errors
def report(folder: Path = typer.Argument(..., help="A study's output folder.")) -> None:
    """Build report.md, report.html and figures from a study's saved artifacts."""
    quiet_libraries()
    from lorascope.report import build_report

    read_study_folder(folder)
    console.print(f"report: {build_report(folder)}")


def read_study_folder(folder: Path):
    """The :class:`~lorascope.study.StudyConfig` stored in a study folder.

    Raises:
        ConfigError: ``folder`` is not a study folder: missing, a file, no ``config.yaml``, or a
            ``config.yaml`` that is not a study's (a training run's, say), naming what is wrong.
    """
    from lorascope.config import build_config, load_yaml
    from lorascope.errors import ConfigError
    from lorascope.study import StudyConfig

    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a study folder ({'a file' if folder.exists() else 'no such folder'})")
    cfg_path = folder / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{folder}: not a study folder (no config.yaml)")
    stored = load_yaml(cfg_path, what="study config")
    try:
        return build_config(StudyConfig, stored, {"name": folder.name}, source="config.yaml")
    except ConfigError as err:
        raise ConfigError(f"{folder}: not a study folder ({err})") from None


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
    app.command()(report)
