"""What ``lorascope train`` prints when a run ends: its dev metrics as a table, and a warning when it learned nothing."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from lorascope.metrics import format_count, format_metric
from lorascope.run_folder import RunRecord


def print_train_result(console: Console, record: RunRecord, out: Path) -> None:
    """The finished run: dev metrics against the majority baseline, per-label precision and recall, the learning check.

    Every metric is written on its own scale (accuracy and F1 as percentages, Matthews correlation on
    −1..1), label supports as counts.
    """
    check = record.learning_check or {}
    table = Table(title=f"{record.task} · {record.method} · seed {record.seed}: dev set, {record.n_eval} examples")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in (record.dev or {}).items():
        if name != "loss":
            table.add_row(name + (" (main)" if name == record.main_metric else ""), format_metric(name, value))
    if check.get("majority_baseline") is not None:
        table.add_row(f"majority baseline ({record.main_metric})",
                      format_metric(record.main_metric, check["majority_baseline"]))
    for label, stats in (record.dev_per_label or {}).items():
        # Precision and recall are shares of examples: percentages whatever the task's metric.
        table.add_row(f"{label}: precision / recall (n = {format_count(stats.get('support'))})",
                      f"{format_metric(None, stats.get('precision'))} / {format_metric(None, stats.get('recall'))}")
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
