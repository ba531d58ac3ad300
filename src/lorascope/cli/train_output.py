"""What ``lorascope train`` prints when a run ends: its dev metrics as a table, and a warning when it learned nothing."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from lorascope.run_folder import RunRecord


def pct(value: float | None) -> str:
    """A metric in [0, 1] as a percentage with one decimal (the form every lorascope command prints)."""
    return "–" if value is None else f"{100 * value:.1f}"


def print_train_result(console: Console, record: RunRecord, out: Path) -> None:
    """The finished run: dev metrics against the majority baseline, per-label precision and recall, the learning check."""
    check = record.learning_check or {}
    table = Table(title=f"{record.task} · {record.method} · seed {record.seed}: dev set, {record.n_eval} examples (%)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in (record.dev or {}).items():
        if name != "loss":
            table.add_row(name + (" (main)" if name == record.main_metric else ""), pct(value))
    if check.get("majority_baseline") is not None:
        table.add_row(f"majority baseline ({record.main_metric})", pct(check["majority_baseline"]))
    for label, stats in (record.dev_per_label or {}).items():
        table.add_row(f"{label}: precision / recall (n = {stats['support']})",
                      f"{pct(stats['precision'])} / {pct(stats['recall'])}")
    console.print(table)
    params = record.parameters or {}
    console.print(
        f"[bold green]done[/] best epoch {record.best_epoch} | {params.get('trainable', 0):,} of {params.get('total', 0):,} "
        f"parameters trained | {record.runtime_s or 0:.1f} s -> {out}"
    )
    if check and not check.get("learned", True):
        console.print(f"[bold yellow]warning: this run did not learn its task:[/] {'; '.join(check['reasons'])}. "
                      "A drift comparison lists it, and is not interpretable if its method "
                      "learned nothing on average.")
