"""``lorascope``: fine-tune, measure drift and serving cost of LoRA vs full fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lorascope.cli.common import (
    PRECEDENCE,
    Command,
    OneLineErrors,
    assemble_train,
    comma_list,
    command_class,
    config_option,
    console,
    is_main_process,
    json_file,
    json_option,
    print_json,
    quiet_libraries,
    settings_argument,
    user_errors,
)
from lorascope.train.config import TrainConfig

app = typer.Typer(
    cls=OneLineErrors,
    help="LoRA under the microscope: fine-tuning, representation drift and serving cost studies.",
    no_args_is_help=True,
    # --install-completion / --show-completion: typer's shell completion for bash, zsh, fish, PowerShell.
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    """``--version``: the installed distribution's version (what pip installed, not the source tree's)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("lorascope")
    except PackageNotFoundError:  # run from a source tree that was never installed
        import lorascope

        installed = lorascope.__version__
    typer.echo(f"lorascope {installed}")
    raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """LoRA under the microscope: fine-tuning, representation drift and serving cost studies."""


# The tasks and methods `baselines` and `sanity` cover unless told otherwise.
DEFAULT_TASKS = ["mrpc", "sst2", "rte"]
DEFAULT_METHODS = ["lora", "full"]


@user_errors
def train(
    task: Optional[str] = typer.Option(None, help="GLUE task (mrpc, sst2, rte) or a task YAML file."),
    method: Optional[str] = typer.Option(None, help="lora or full."),
    model: Optional[str] = typer.Option(None, help="Base model: alias (minilm, smollm2, tinyllama, tiny-llama), folder or Hub id."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    out: Path = typer.Option(..., help="Output folder (written atomically; rerun resumes)."),
    config: Optional[Path] = config_option(),
    overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    overrides: Optional[list[str]] = settings_argument("train_limit=2000 epochs=1 lr=5e-4"),
) -> None:
    """Fine-tune one classifier with LoRA or full fine-tuning and save it with its metrics.

    Examples:

    lorascope train --task rte --method lora --model minilm --seed 42 --out runs/demo

    lorascope train --task sst2 --method full --out runs/sst2-full train_limit=2000 epochs=1
    """
    quiet_libraries()
    from lorascope.cli.train_output import print_train_result
    from lorascope.models.registry import resolve_model
    from lorascope.run_folder import RunFolder

    cfg = assemble_train(config, dict(task=task, method=method, model=model, seed=seed), overrides)
    resolve_model(cfg.model)  # an unusable model is reported before torch and transformers load (seconds)
    from lorascope.train import run_train

    record = run_train(cfg, out, overwrite=overwrite)
    if record is None or not is_main_process():
        return
    if not record.ok:
        console.print(f"[bold red]failed:[/] {record.reason} (recorded in {RunFolder(out).metrics_path})")
        raise typer.Exit(1)
    print_train_result(console, record, out)


@user_errors
def models() -> None:
    """List model aliases and whether each is available offline here."""
    from lorascope.models.registry import alias_availability

    table = Table(title="model aliases")
    for col in ("alias", "model", "offline here", "how"):
        table.add_column(col)
    for name, desc, ok, detail in alias_availability():
        table.add_row(name, desc, "[green]yes[/]" if ok else "[yellow]no[/]", detail)
    console.print(table)


@user_errors
def baselines(
    ctx: typer.Context,
    tasks: list[str] = typer.Option(DEFAULT_TASKS, "--task", "--tasks", callback=comma_list,
                                    help="A task: GLUE name or task YAML file; repeat, or separate with commas."),
    data_dir: Optional[str] = typer.Option(None, help="GLUE folder (default: $GLUE_DIR, else the Hub)."),
    draws: int = typer.Option(1000, min=1, help="Random prediction vectors averaged for the uniform baseline."),
    json_out: bool = json_option(),
) -> None:
    """Majority-class and uniform-random baselines on the dev sets.

    Example:

    lorascope baselines --task sst2,rte --json
    """
    quiet_libraries()
    from lorascope.artifacts import write_json
    from lorascope.checks.baselines import run_baselines
    from lorascope.metrics import format_metric

    results = run_baselines(tasks, data_dir, draws)
    data = {"baselines": [r.model_dump() for r in results]}
    old_file = json_file(ctx)
    if json_out and old_file is None:
        print_json(data)
        return
    table = Table(title="dev-set baselines (majority class of the training labels; uniform random)")
    for col in ("task", "n dev", "majority label", "majority", f"random (mean ± sd of {draws})"):
        table.add_column(col)
    for r in results:
        maj = ", ".join(f"{m} {format_metric(m, v)}" for m, v in r.majority.items())
        rnd = ", ".join(f"{m} {format_metric(m, r.random_mean[m], r.random_sd[m])}" for m in r.random_mean)
        table.add_row(r.task, str(r.n_dev), r.majority_label, maj, rnd)
    console.print(table)
    if old_file is not None:
        write_json(old_file, data)


@user_errors
def sanity(
    model: Optional[str] = typer.Option(None, help="Base model: alias, folder or Hub id."),
    tasks: list[str] = typer.Option(DEFAULT_TASKS, "--task", "--tasks", callback=comma_list,
                                    help="A task: GLUE name or task YAML file; repeat, or separate with commas."),
    methods: list[str] = typer.Option(DEFAULT_METHODS, "--method", "--methods", callback=comma_list,
                                      help="A method (lora, full); repeat, or separate with commas."),
    samples: int = typer.Option(10, help="Training examples to overfit."),
    max_epochs: int = typer.Option(10, help="Epochs allowed."),
    threshold: float = typer.Option(0.1, help="Training loss to reach."),
    config: Optional[Path] = config_option(),
    overrides: Optional[list[str]] = settings_argument("lr=1e-3 max_length=64", what="Training settings"),
) -> None:
    """Check that every (task, method) overfits a few training examples (exit 1 if one fails).

    Example:

    lorascope sanity --model minilm --task sst2 --method lora,full
    """
    from lorascope.config import build_config
    from lorascope.study.config import SanitySettings

    # The study's rules for these three (positive, finite), checked before any model loads.
    checks = build_config(SanitySettings, dict(samples=samples, max_epochs=max_epochs, threshold=threshold))
    samples, max_epochs, threshold = checks.samples, checks.max_epochs, checks.threshold
    quiet_libraries()
    from lorascope.checks.sanity import run_sanity_one

    results = []
    for t in tasks:
        for m in methods:
            cfg = assemble_train(config, dict(task=t, method=m, model=model), overrides)
            console.print(f"sanity: {t} / {m} on {cfg.model} …")
            results.append(run_sanity_one(cfg, samples, max_epochs, threshold))
    table = Table(title=f"sanity: overfit {samples} training examples to loss < {threshold} within {max_epochs} epochs")
    for col in ("task", "method", "epochs", "final train loss", "result"):
        table.add_column(col)
    for r in results:
        verdict = "[green]pass[/]" if r.passed else f"[red]FAIL[/] {r.reason or ''}"
        table.add_row(r.task, r.method, str(r.epochs_run), f"{r.final_loss:.4f}", verdict)
    console.print(table)
    if not all(r.passed for r in results):
        raise typer.Exit(1)


app.command(cls=command_class(TrainConfig))(train)
app.command(cls=Command)(models)
app.command(cls=Command)(baselines)
app.command(cls=command_class(TrainConfig, intro=(
    "Training settings of every check, as `lorascope train` takes them (--task and --method choose what is "
    f"checked): each as key=value, or as a key of the --config YAML file ({PRECEDENCE}). Every key, with its "
    "type and default:")))(sanity)


from lorascope.cli import analysis as _analysis  # noqa: E402
from lorascope.cli import data as _data  # noqa: E402
from lorascope.cli import hpo as _hpo  # noqa: E402
from lorascope.cli import lenses as _lenses  # noqa: E402
from lorascope.cli import serving as _serving  # noqa: E402
from lorascope.cli import study as _study  # noqa: E402

_analysis.register(app)
_data.register(app)
_hpo.register(app)
_lenses.register(app)
_serving.register(app)
_study.register(app)

if __name__ == "__main__":
    app()
