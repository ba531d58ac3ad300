"""What ``lorascope train`` prints when a run ends: its dev metrics as a table, and a warning when it learned nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def pct(value: float | None) -> str:
    """A metric in [0, 1] as a percentage with one decimal (the form every lorascope command prints)."""
    return "–" if value is None else f"{100 * value:.1f}"


def print_train_result(console: Console, metrics: dict[str, Any], out: Path) -> None:
    """The finished run: dev metrics against the majority baseline, per-label precision and recall, the learning check."""
    check = metrics.get("learning_check") or {}
    table = Table(title=f"{metrics['task']} · {metrics['method']} · seed {metrics['seed']}: dev set, "
                        f"{metrics['n_eval']} examples (%)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics["dev"].items():
        if name != "loss":
            table.add_row(name + (" (main)" if name == metrics["main_metric"] else ""), pct(value))
    if check.get("majority_baseline") is not None:
        table.add_row(f"majority baseline ({metrics['main_metric']})", pct(check["majority_baseline"]))
    for label, stats in (metrics.get("dev_per_label") or {}).items():
        table.add_row(f"{label}: precision / recall (n = {stats['support']})",
                      f"{pct(stats['precision'])} / {pct(stats['recall'])}")
    console.print(table)
    params = metrics["parameters"]
    console.print(
        f"[bold green]done[/] best epoch {metrics['best_epoch']} | {params['trainable']:,} of {params['total']:,} "
        f"parameters trained | {metrics['runtime_s']:.1f} s -> {out}"
    )
    if check and not check.get("learned", True):
        console.print(f"[bold yellow]warning: this run did not learn its task:[/] {'; '.join(check['reasons'])}. "
                      "A drift comparison lists it, and is not interpretable if its method "
                      "learned nothing on average.")
