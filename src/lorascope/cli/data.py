"""CLI commands for the user's own data: ``data split``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lorascope.cli.common import Command, console, user_errors

data_app = typer.Typer(help="Prepare your own data for a task file.", no_args_is_help=True)


@data_app.command("split", cls=Command)
@user_errors
def split(
    source: Path = typer.Argument(..., help="One labelled file: .csv, .tsv or .jsonl (or any, with --format)."),
    out: Path = typer.Option(..., help="Folder for train.<ext>, dev.<ext> and <name>.yaml (existing files are "
                                       "never replaced)."),
    text: list[str] = typer.Option(..., help="Text column: header name or 0-based position; twice for a sentence pair "
                                             "(a header may hold a comma, so commas do not separate)."),
    label: str = typer.Option(..., help="Label column: header name or 0-based position."),
    name: Optional[str] = typer.Option(None, help="Task name (default: the file's name without its extension)."),
    dev_fraction: float = typer.Option(0.2, help="Share of each label's rows that goes to dev."),
    seed: int = typer.Option(0, help="Seed of the split."),
    file_format: Optional[str] = typer.Option(None, "--format", help="csv, tsv or jsonl (default: the extension)."),
    delimiter: Optional[str] = typer.Option(None, help="One character (default: ',' for csv, tab for tsv)."),
    header: bool = typer.Option(True, help="Whether the first line names the columns (--no-header: positions)."),
) -> None:
    """Split one labelled file into training and dev files (seeded, stratified by label) and write
    the task file that describes them, ready for `lorascope train --task` or a study's `tasks`.

    Example:

    lorascope data split pairs.jsonl --text premise --text hypothesis --label gold --out data/nli
    """
    from lorascope.data.readers import TableLayout
    from lorascope.data.split import split_labelled_file
    from lorascope.errors import ConfigError

    if file_format not in (None, "csv", "tsv", "jsonl"):
        raise ConfigError(f"--format {file_format!r}: expected csv, tsv or jsonl")
    if delimiter is not None and len(delimiter) != 1:
        raise ConfigError(f"--delimiter {delimiter!r}: expected one character")
    layout = TableLayout(format=file_format, delimiter=delimiter, header=header)  # type: ignore[arg-type]
    result = split_labelled_file(source, out, text_columns=text, label_column=label, name=name,
                                 dev_fraction=dev_fraction, seed=seed, layout=layout)
    table = Table(title=f"{source} split (seed {seed})")
    for col in ("label", "train", "dev"):
        table.add_column(col)
    for lab, (n_train, n_dev) in result.counts.items():
        table.add_row(lab, str(n_train), str(n_dev))
    console.print(table)
    console.print(f"wrote {result.train}, {result.dev} and the task file {result.task_file}")


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    app.add_typer(data_app, name="data")
