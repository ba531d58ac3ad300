"""CLI commands of the drift analysis: ``represent`` and ``drift``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lorascope.cli.common import assemble, console, quiet_libraries, user_errors, with_settings_help

OVERRIDES = "Settings as key=value (e.g. n_samples=500 bootstrap=2000)."


@user_errors
def represent(
    model: str = typer.Option(..., help="Base model (alias, folder, Hub id) or a training run folder."),
    task: Optional[str] = typer.Option(None, help="GLUE task, task YAML file or run folder (default: --model's task, "
                                                  "when it is a run folder)."),
    out: Path = typer.Option(..., help="Output .safetensors file."),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES, show_default=False),
) -> None:
    """Extract mean-pooled (and head-token) hidden states of every layer on a fixed sample set."""
    quiet_libraries()
    from lorascope.represent import RepresentConfig, run_represent
    from lorascope.run_folder import RunFolder

    if task is None and RunFolder.holds_run(model):
        task = model  # a run folder records its task
    cfg = assemble(RepresentConfig, None, dict(model=model, task=task), overrides)
    reps = run_represent(cfg, out)
    shape = next(iter(reps.states.values())).shape
    console.print(f"[bold green]done[/] {len(reps.ids)} samples × {shape[0]} layers × {shape[2]} dims -> {out}")


@user_errors
def drift(
    task: Optional[str] = typer.Option(None, help="GLUE task, task YAML file or run folder (default: the runs' own task)."),
    base: str = typer.Option(..., help="Base model the runs were trained from."),
    runs: Path = typer.Option(..., help="Folder whose sub-folders are training runs."),
    out: Path = typer.Option(..., help="Output folder (drift.json, layers.csv, reps/)."),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES, show_default=False),
) -> None:
    """Layer-wise drift (CKA, debiased CKA, cosine) of every run from the base, with controls and statistics."""
    quiet_libraries()
    from lorascope.drift import DriftConfig, run_drift

    cfg = assemble(DriftConfig, None, dict(task=task, base=base, runs=str(runs)), overrides)
    result = run_drift(cfg, out)
    print_drift_summary(result)
    console.print(f"-> {out / 'drift.json'}, {out / 'layers.csv'}")


def _fmt(stat: dict | None, digits: int = 4, percent: bool = False) -> str:
    """mean ± sd (n); a metric in [0, 1] as a percentage, like every command prints metrics."""
    if not stat or stat.get("mean") is None:
        return "–"
    scale, digits = (100, 1) if percent else (1, digits)
    sd = f" ± {scale * stat['sd']:.{digits}f}" if stat.get("sd") is not None else ""
    return f"{scale * stat['mean']:.{digits}f}{sd} (n={stat['n']})"


def print_drift_summary(result: dict) -> None:
    controls = Table(title=f"{result['task']}: pipeline controls ({result['n_samples']} samples, {result['n_layers']} layers)")
    for col in ("control", "expectation", "mean drift", "debiased", "result"):
        controls.add_column(col)
    for c in result["controls"]:
        controls.add_row(c["name"], c["expectation"], f"{c['mean_drift']:.2e}", f"{c['mean_drift_debiased']:.3f}",
                         "[green]pass[/]" if c["passed"] else "[red]FAIL[/]")
    console.print(controls)
    if result.get("n_samples_note"):
        console.print(f"[yellow]note:[/] {result['n_samples_note']}")
    table = Table(title=f"{result['task']}: drift from base (1 − linear CKA, mean over layers; mean ± sd over seeds)")
    for col in ("method", "drift", "debiased drift", "cosine", "dev metric (%)", "noise floor (sd over seeds)"):
        table.add_column(col)
    for meth, s in result["methods"].items():
        floor = result["noise_floor"].get(meth)
        table.add_row(meth, _fmt(s["drift"]), _fmt(s["drift_debiased"]), _fmt(s["cosine"]), _fmt(s["metric"], percent=True),
                      f"{floor['sd']:.4f}" if floor else "–")
    console.print(table)
    comp = result["comparison"]
    if comp.get("runs_not_learned"):
        console.print(f"[yellow]note:[/] at majority level (did not learn): {', '.join(comp['runs_not_learned'])}")
    if comp.get("not_interpretable"):
        console.print(f"[bold yellow]LoRA vs full FT {comp['not_interpretable']}[/]", highlight=False)
        return
    if comp.get("reduction_percent") is not None:
        console.print(f"drift reduction LoRA vs full FT: {comp['reduction_percent']:.1f}% over {comp['n_pairs']} seed pair(s)")
    for key in ("paired_t", "sign_flip"):
        t = comp.get(key)
        if t and "p_value" in t:
            floor = f", smallest attainable p {t['min_attainable_p']:.3g}" if t.get("min_attainable_p") else ""
            console.print(f"  {t['test']}, two-sided (null: no difference in mean drift): n = {t['n']}, "
                          f"p = {t['p_value']:.4g}{floor}")
        elif t:
            console.print(f"  {key}: {t.get('error')}")
    for key, v in (comp.get("verdicts") or {}).items():
        console.print(f"  {v['message']}" if "status" in v else f"  {key}: {v.get('error')}", highlight=False)


def register(app: typer.Typer) -> None:
    from lorascope.drift import DriftConfig
    from lorascope.represent import RepresentConfig

    app.command()(with_settings_help(represent, RepresentConfig))
    app.command()(with_settings_help(drift, DriftConfig))
