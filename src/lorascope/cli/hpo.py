"""CLI command ``lorascope hpo``: the protocol's hyperparameter search for one (task, method)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from lorascope.cli.common import console, quiet_libraries, user_errors, with_settings_help
from lorascope.extras import require

OVERRIDES_HELP = (
    "Settings as key=value. Search settings (n_trials, seed, study_name, heartbeat_s, space.lr.high=1e-3 …) "
    "apply to the search; any other key is a base training setting of every trial (train_limit=3000 max_length=128 …)."
)
# SQLAlchemy's URL schemes that load psycopg2 (the postgres extra); other drivers are the user's choice.
_PSYCOPG2_SCHEMES = ("postgresql", "postgresql+psycopg2")


@user_errors
def hpo(
    task: Optional[str] = typer.Option(None, help="GLUE task (mrpc, sst2, rte) or a task YAML file."),
    method: Optional[str] = typer.Option(None, help="lora or full."),
    model: Optional[str] = typer.Option(None, help="Alias (minilm, smollm2, tinyllama, tiny-llama), folder or Hub id."),
    trials: Optional[int] = typer.Option(None, "--trials", help="Trials in the whole study, shared by all workers (default 15)."),
    out: Path = typer.Option(..., help="This worker's output folder (trial runs, hpo.json, best_config.yaml)."),
    storage: Optional[str] = typer.Option(
        None, help="Optuna storage URL shared by workers, e.g. postgresql://user:pw@host/db (default: sqlite in --out)."
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="YAML file of search settings (task, method, train:, space: …)."
    ),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """Search hyperparameters with Optuna TPE; rerun the same command to resume, or start more workers."""
    require("hpo", by="lorascope hpo")  # before the seconds quiet_libraries takes
    quiet_libraries()
    import optuna

    from lorascope.config import check_report_to
    from lorascope.hpo import HpoConfig, run_hpo
    from lorascope.metrics import format_metric

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from run_hpo instead
    cfg = _assemble(HpoConfig, config, dict(task=task, method=method, model=model, n_trials=trials, storage=storage), overrides)
    scheme = (cfg.storage or "").split("://")[0]
    if scheme in _PSYCOPG2_SCHEMES:
        require("postgres", by=f"a {scheme}:// storage")
    # Report bad settings before a storage is opened or a folder written.
    cfg.search_space()
    check_report_to(cfg.base_train().report_to)
    console.print(f"hpo: study '{cfg.resolved_study_name()}', {cfg.n_trials} trials -> {out}")
    summary = run_hpo(cfg, out, log=lambda line: console.print(line, highlight=False))
    _print_trials(summary)
    if summary["best_config"] is None:
        console.print("[bold red]no trial completed[/]: see the reasons above and in hpo.json")
        raise typer.Exit(1)
    best = summary["best"]
    console.print(
        f"[bold green]best[/] trial {best['number']}: dev {summary['main_metric']} "
        f"{format_metric(summary['main_metric'], best['value'])} -> {summary['best_config']}"
    )


def _assemble(cls, config_file: Optional[Path], options: dict[str, Any], overrides: Optional[list[str]]):
    """Defaults < YAML file < options < overrides; override keys that are no search setting go to ``train``."""
    from lorascope.config import build_config, load_yaml, parse_overrides

    layers = [load_yaml(config_file)] if config_file else []
    layers.append({k: v for k, v in options.items() if v is not None})
    parsed = parse_overrides(overrides or [])
    layers.append({k: v for k, v in parsed.items() if k in cls.model_fields})
    layers.append({"train": {k: v for k, v in parsed.items() if k not in cls.model_fields}})
    return build_config(cls, *layers, source=str(config_file) if config_file else "config")


def _print_trials(summary: dict[str, Any]) -> None:
    from lorascope.metrics import format_metric

    best = (summary["best"] or {}).get("number")
    table = Table(title=f"study {summary['study']} ({summary['storage']})")
    for col in ("trial", "state", f"dev {summary['main_metric']}", "time (s)"):
        table.add_column(col, no_wrap=True)
    # One wrapping column for the sampled settings keeps the table readable on narrow terminals.
    table.add_column("settings")
    for t in summary["trials"]:
        state = t["state"].lower()
        if t["state"] == "PRUNED" and t["status"] == "failed":
            state = "[yellow]diverged[/]" if t["reason"] != "out of memory" else "[yellow]out of memory[/]"
        if t["number"] == best:
            state = "[bold green]best[/]"
        table.add_row(
            str(t["number"]),
            state,
            "" if t["value"] is None else format_metric(summary["main_metric"], t["value"]),
            "" if t["duration_s"] is None else f"{t['duration_s']:.1f}",
            " ".join(f"{k}={_fmt(v)}" for k, v in t["params"].items()) or (t["reason"] or ""),
        )
    console.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def register(app: typer.Typer) -> None:
    from lorascope.hpo import HpoConfig

    app.command()(with_settings_help(hpo, HpoConfig, "Search settings (key=value; any other key is a training setting, "
                                                     "see `lorascope train --help`)"))
