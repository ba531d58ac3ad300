"""CLI command ``lorascope hpo``: the protocol's hyperparameter search for one (task, method)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table

from lorascope.cli.common import (
    PRECEDENCE,
    assemble,
    command_class,
    config_option,
    console,
    quiet_libraries,
    settings_argument,
    user_errors,
)
from lorascope.extras import require

if TYPE_CHECKING:  # imported where used at run time: `lorascope --help` stays light
    from lorascope.hpo.record import HpoRecord

# SQLAlchemy's URL schemes that load psycopg2 (the postgres extra); other drivers are the user's choice.
_PSYCOPG2_SCHEMES = ("postgresql", "postgresql+psycopg2")


@user_errors
def hpo(
    task: Optional[str] = typer.Option(None, help="GLUE task (mrpc, sst2, rte) or a task YAML file."),
    method: Optional[str] = typer.Option(None, help="lora or full."),
    model: Optional[str] = typer.Option(None, help="Base model: alias (minilm, smollm2, tinyllama, tiny-llama), folder or Hub id."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", "--trials", help="Trials in the whole study, shared by all workers."),
    out: Path = typer.Option(..., help="This worker's output folder (trial runs, hpo.json, best_config.yaml)."),
    storage: Optional[str] = typer.Option(
        None, help="Optuna storage URL shared by workers, e.g. postgresql://user:pw@host/db (default: sqlite in --out)."
    ),
    config: Optional[Path] = config_option(),
    overrides: Optional[list[str]] = settings_argument(
        "study_name=s1 space.lr.high=1e-3 train_limit=3000", what="Search or training settings",
        where="the search keys are listed below, the training keys in `lorascope train --help`"),
) -> None:
    """Search hyperparameters with Optuna TPE; rerun the same command to resume, or start more workers.

    Example:

    lorascope hpo --task sst2 --method lora --model minilm --n-trials 15 --out runs/hpo/sst2-lora train_limit=3000
    """
    require("hpo", by="lorascope hpo")  # before the seconds quiet_libraries takes
    quiet_libraries()
    import optuna

    from lorascope.config import check_report_to
    from lorascope.hpo import HpoConfig, run_hpo
    from lorascope.metrics import format_metric

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from run_hpo instead
    from lorascope.train.config import TrainConfig

    cfg = assemble(HpoConfig, config, dict(task=task, method=method, model=model, n_trials=n_trials, storage=storage),
                   overrides, rest=("train", TrainConfig))
    scheme = (cfg.storage or "").split("://")[0]
    if scheme in _PSYCOPG2_SCHEMES:
        require("postgres", by=f"a {scheme}:// storage")
    # Report bad settings before a storage is opened or a folder written.
    cfg.search_space()
    check_report_to(cfg.base_train().report_to)
    console.print(f"hpo: study '{cfg.resolved_study_name()}', {cfg.n_trials} trials -> {out}")
    summary = run_hpo(cfg, out, log=lambda line: console.print(line, highlight=False))
    _print_trials(summary)
    best = summary.best
    if best is None or summary.best_config is None:
        console.print("[bold red]no trial completed[/]: see the reasons above and in hpo.json")
        raise typer.Exit(1)
    console.print(
        f"[bold green]best[/] trial {best.number}: dev {summary.main_metric} "
        f"{format_metric(summary.main_metric, best.value)} -> {summary.best_config}"
    )


def _print_trials(summary: HpoRecord) -> None:
    from lorascope.metrics import format_metric

    best = summary.best.number if summary.best else None
    table = Table(title=f"study {summary.study} ({summary.storage})")
    for col in ("trial", "state", f"dev {summary.main_metric}", "time (s)"):
        table.add_column(col, no_wrap=True)
    # One wrapping column for the sampled settings keeps the table readable on narrow terminals.
    table.add_column("settings")
    for t in summary.trials:
        state = t.state.lower()
        if t.state == "PRUNED" and t.status == "failed":
            state = "[yellow]diverged[/]" if t.reason != "out of memory" else "[yellow]out of memory[/]"
        if t.number == best:
            state = "[bold green]best[/]"
        table.add_row(
            str(t.number),
            state,
            "" if t.value is None else format_metric(summary.main_metric, t.value),
            "" if t.duration_s is None else f"{t.duration_s:.1f}",
            " ".join(f"{k}={_fmt(v)}" for k, v in t.params.items()) or (t.reason or ""),
        )
    console.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def register(app: typer.Typer) -> None:
    """Add ``hpo`` to ``app``: its options are the search settings, and other key=value pairs training settings."""
    from lorascope.hpo import HpoConfig
    from lorascope.train.config import TrainConfig

    intro = ("Search settings: each as key=value, or as a key of the --config YAML file "
             f"({PRECEDENCE}); a key=value whose key is none of these is a training setting of every trial "
             "(see `lorascope train --help`). Every search key, with its type and default:")
    app.command(cls=command_class(HpoConfig, rest=("train", TrainConfig), intro=intro))(hpo)
