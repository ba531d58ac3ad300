"""CLI commands of the drift analysis: ``represent`` and ``drift``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from lorascope.cli.common import (
    assemble,
    command_class,
    config_option,
    console,
    quiet_libraries,
    settings_argument,
    user_errors,
)

if TYPE_CHECKING:  # at run time imported where used: `lorascope --help` loads no heavy library
    from lorascope.drift.record import DriftRecord, MeasureStats
    from lorascope.report.learning import Learning


@user_errors
def represent(
    model: str = typer.Option(..., help="Base model (alias, folder, Hub id) or a training run folder."),
    task: Optional[str] = typer.Option(None, help="GLUE task, task YAML file or run folder (default: --model's task, "
                                                  "when it is a run folder)."),
    out: Path = typer.Option(..., help="Output .safetensors file."),
    config: Optional[Path] = config_option(),
    overrides: Optional[list[str]] = settings_argument("n_samples=500 max_length=128"),
) -> None:
    """Extract mean-pooled (and head-token) hidden states of every layer on a fixed sample set.

    Example:

    lorascope represent --model runs/demo --out reps.safetensors n_samples=500
    """
    if out.is_dir():  # found now, not when the extraction's minutes are spent and the file is written
        from lorascope.errors import ConfigError

        raise ConfigError(f"--out {out}: is a folder; expected the path of a .safetensors file")
    quiet_libraries()
    from lorascope.represent import RepresentConfig, run_represent
    from lorascope.run_folder import RunFolder

    cfg = assemble(RepresentConfig, config, dict(model=model, task=task), overrides)
    if "task" not in cfg.model_fields_set and RunFolder.holds_run(cfg.model):
        cfg.task = cfg.model  # a run folder records its task
    reps = run_represent(cfg, out)
    shape = next(iter(reps.states.values())).shape
    console.print(f"[bold green]done[/] {len(reps.ids)} samples × {shape[0]} layers × {shape[2]} dims -> {out}")


@user_errors
def drift(
    task: Optional[str] = typer.Option(None, help="GLUE task, task YAML file or run folder (default: the runs' own task)."),
    base: str = typer.Option(..., "--model", "--base", help="Base model the runs were trained from."),
    runs: Path = typer.Option(..., help="Folder whose sub-folders are training runs."),
    out: Path = typer.Option(..., help="Output folder (drift.json, layers.csv, reps/)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    config: Optional[Path] = config_option(),
    overrides: Optional[list[str]] = settings_argument("n_samples=500 bootstrap=2000"),
) -> None:
    """Layer-wise drift (CKA, debiased CKA, cosine) of every run from the base, with controls and statistics.

    Example:

    lorascope drift --task sst2 --model minilm --runs runs/quickstart/train --out runs/drift-sst2 n_samples=750
    """
    quiet_libraries()
    from lorascope.drift import DriftConfig, run_drift
    from lorascope.report.learning import comparison_learning
    from lorascope.variants import recorded_primary

    cfg = assemble(DriftConfig, config, dict(task=task, base=base, runs=str(runs)), overrides)
    result = run_drift(cfg, out, overwrite=overwrite)
    compared = [(None, r.method, r.seed) for r in result.runs]
    learning = comparison_learning(runs, compared, recorded_primary(result.primary), result.comparison.not_interpretable,
                                   task=result.task)
    print_drift_summary(result, learning)
    console.print(f"-> {out / 'drift.json'}, {out / 'layers.csv'}")


def _fmt(stat: MeasureStats, digits: int = 4) -> str:
    """mean ± sd (n) of a drift measure."""
    if stat.mean is None:
        return "–"
    sd = f" ± {stat.sd:.{digits}f}" if stat.sd is not None else ""
    return f"{stat.mean:.{digits}f}{sd} (n={stat.n})"


def _fmt_metric(metric: str | None, stat: MeasureStats) -> str:
    """mean ± sd (n) of the task metric, written as every command writes it (Matthews on its own scale)."""
    from lorascope.metrics import format_metric

    if stat.mean is None:
        return "–"
    return f"{format_metric(metric, stat.mean, stat.sd)} (n={stat.n})"


def print_drift_summary(result: DriftRecord, learning: Learning | None = None) -> None:
    """The controls, each method's drift, and LoRA vs full FT: the tests where the runs learned their
    task and a seed pair allows them; otherwise why not, above the numbers kept for the record."""
    from lorascope.drift.record import NoVerdict, Undefined
    from lorascope.metrics import metric_name

    metric = learning.metric if learning else None
    controls = Table(title=f"{result.task}: pipeline controls ({result.n_samples} samples, {result.n_layers} layers)")
    for col in ("control", "expectation", "mean drift", "debiased", "result"):
        controls.add_column(col)
    for c in result.controls:
        controls.add_row(c.name, c.expectation, f"{c.mean_drift:.2e}", f"{c.mean_drift_debiased:.3f}",
                         "[green]pass[/]" if c.passed else "[red]FAIL[/]")
    console.print(controls)
    if result.n_samples_note:
        console.print(f"[yellow]note:[/] {result.n_samples_note}")
    table = Table(title=f"{result.task}: drift from base (1 − linear CKA, mean over layers; mean ± sd over seeds)")
    for col in ("method", "drift", "debiased drift", "cosine", f"dev {metric_name(metric)}", "noise floor (sd over seeds)"):
        table.add_column(col)
    for meth, s in result.methods.items():
        floor = result.noise_floor.get(meth)
        table.add_row(meth, _fmt(s.drift), _fmt(s.drift_debiased), _fmt(s.cosine), _fmt_metric(metric, s.metric),
                      f"{floor.sd:.4f}" if floor else "–")
    console.print(table)
    comp = result.comparison
    learned = learning is None or learning.learned
    if not learned and learning is not None:  # learning is None: learned
        print_not_learned(learning)
    elif learning and learning.weak_runs:  # single seeds at majority level; the comparison still stands
        console.print(f"[yellow]note:[/] at majority level: {'; '.join(learning.weak_runs)}", highlight=False)
    if comp.reduction_percent is not None:
        console.print(f"drift reduction LoRA vs full FT: {comp.reduction_percent:.1f}% over {comp.n_pairs} seed "
                      f"pair{'s' if comp.n_pairs != 1 else ''}" + ("" if learned else " (not interpretable)"),
                      highlight=False)
    if comp.n_pairs < 2:
        console.print(f"  {one_pair_text(comp.n_pairs)}", highlight=False)
        return
    for key, t in (("paired_t", comp.paired_t), ("sign_flip", comp.sign_flip)):
        if isinstance(t, Undefined):
            console.print(f"  {key}: {t.error}", highlight=False)
        elif t is not None and t.p_value is not None:
            smallest = f", smallest attainable p {t.min_attainable_p:.3g}" if t.min_attainable_p else ""
            console.print(f"  {t.test}, two-sided (null: no difference in mean drift): n = {t.n}, "
                          f"p = {t.p_value:.4g}{smallest}" + ("" if learned else " (not interpretable)"), highlight=False)
    if not learned:
        return  # the verdicts would each repeat the one reason above
    for key, v in comp.verdicts.items():
        console.print(f"  {key}: {v.error}" if isinstance(v, NoVerdict) else f"  {v.message}", highlight=False)


def print_not_learned(learning: Learning) -> None:
    """The caveat of a comparison between models that did not learn, before any number of it."""
    console.print(f"[bold yellow]LoRA vs full FT is not interpretable: {learning.statement()}.[/] Differences between "
                  "models that did not learn say nothing about how LoRA and full fine-tuning differ; the numbers "
                  "below are marked (not interpretable) and kept for the record only.", highlight=False)


def one_pair_text(n_pairs: int) -> str:
    """Why there is no test across seeds with fewer than 2 seed pairs (said, not left to a test's error)."""
    which = "one seed pair allows" if n_pairs == 1 else f"{n_pairs} seed pairs allow"
    return (f"{which} no test across seeds (a paired test needs at least 2 seed pairs); the numbers shown are "
            "descriptive.")


def register(app: typer.Typer) -> None:
    """Add ``represent`` and ``drift`` to ``app``, each with the options of its config's settings."""
    from lorascope.drift import DriftConfig
    from lorascope.represent import RepresentConfig

    app.command(cls=command_class(RepresentConfig))(represent)
    app.command(cls=command_class(DriftConfig))(drift)
