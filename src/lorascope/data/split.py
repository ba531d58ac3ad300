"""One labelled file -> a training file, a dev file and the task file that describes them.

The split is seeded and stratified by label: every label keeps about its share in both files,
and every label is in both, so that the model is trained on every label and scored on every one.
Rows keep their file order and their text: JSONL lines and unquoted rows are copied as written,
quoted CSV rows are rewritten by the csv module. Everything is checked before anything is
written, and the three files appear together or not at all.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lorascope.artifacts import check_output_path
from lorascope.data.examples import table_to_examples
from lorascope.data.readers import RawTable, TableLayout, read_table, source_lines
from lorascope.data.tasks import TASK_NAME, ColumnRef, task_from_mapping
from lorascope.errors import ConfigError, DataError

DEV_FRACTION = 0.2


@dataclass(frozen=True)
class SplitResult:
    """What :func:`split_labelled_file` wrote.

    Attributes:
        task_file: the task YAML (its ``files`` point at the two data files beside it).
        train, dev: the data files.
        counts: label -> (training rows, dev rows), labels in id order.
    """

    task_file: Path
    train: Path
    dev: Path
    counts: dict[str, tuple[int, int]]


def column_ref(text: str, table: RawTable, header: bool = True) -> ColumnRef:
    """A column given on the command line: a header name, else a 0-based position written as digits
    (without a header, columns have positions only)."""
    if header and table.column(text) is not None:
        return text
    return int(text) if re.fullmatch(r"[0-9]+", text) else text


def split_labelled_file(source: Path, out: Path, *, text_columns: list[str], label_column: str, name: str | None = None,
                        dev_fraction: float = DEV_FRACTION, seed: int = 0,
                        layout: TableLayout = TableLayout()) -> SplitResult:
    """Split ``source`` into ``out/train.<ext>`` and ``out/dev.<ext>``, and write ``out/<name>.yaml`` for them.

    Args:
        text_columns: one column (single text) or two (a pair): header names, or 0-based positions as digits.
        label_column: the gold label's column.
        name: the task's name (default: ``source``'s stem, with other characters than letters,
            digits, ``_`` and ``-`` as ``_``).
        dev_fraction: share of each label's rows that goes to dev (see :func:`stratified_split`).
        layout: how ``source`` is written; the output files are written the same way.

    Raises:
        ConfigError: a bad name, fraction or number of text columns; one of the outputs exists already.
        DataError: naming the file (and row): unreadable, a missing column, the label among the
            text columns, an empty text or label, fewer than two labels, or a label with one row.
    """
    name = name if name is not None else re.sub(r"[^A-Za-z0-9_-]", "_", source.stem)[:48]
    if not TASK_NAME.fullmatch(name):
        raise ConfigError(f"--name {name!r}: a task name is 1 to 48 letters, digits, '_' or '-'")
    if not 0 < dev_fraction < 1:
        raise ConfigError(f"--dev-fraction {dev_fraction}: expected a share of the rows, between 0 and 1")
    if not 1 <= len(text_columns) <= 2:
        raise ConfigError(f"--text: give one column (single text) or two (a pair), got {len(text_columns)}")
    jsonl = layout.format_of(source) == "jsonl"
    _check_jsonl_options(source, layout, jsonl)
    table = read_table(source, layout=layout)
    text_refs, label_ref, label_name = _columns(source, table, [*text_columns, label_column], layout.header, jsonl)
    labels = _labels(source, table, label_name)
    ext = source.suffix or f".{layout.format_of(source)}"
    paths = {"task_file": out / f"{name}.yaml", "train": out / f"train{ext}", "dev": out / f"dev{ext}"}
    task = _task_mapping(name, paths, text_refs, label_ref, sorted(set(labels)), layout)
    table_to_examples(task_from_mapping(task, paths["task_file"]), table, "train")  # texts as training reads them
    train_rows, dev_rows = stratified_split(labels, dev_fraction, seed, source)
    check_output_path(out)
    for path in paths.values():
        if path.exists():
            raise ConfigError(f"{path}: exists already; remove it or choose another --out")
    header = (f"# Task '{name}': {source.name} split by `lorascope data split` (seed {seed}, dev_fraction "
              f"{dev_fraction}, stratified by label): {len(train_rows)} training rows, {len(dev_rows)} dev rows.\n"
              "# labels: in id order. metrics: any of accuracy, f1 (two labels), macro_f1, weighted_f1, matthews.\n")
    _write_together(out, {paths["train"]: _rows_text(source, table, train_rows, layout),
                          paths["dev"]: _rows_text(source, table, dev_rows, layout),
                          paths["task_file"]: header + yaml.safe_dump(task, sort_keys=False, allow_unicode=True)})
    counts = {label: (sum(labels[i] == label for i in train_rows), sum(labels[i] == label for i in dev_rows))
              for label in task["labels"]}
    return SplitResult(paths["task_file"], paths["train"], paths["dev"], counts)


def _check_jsonl_options(source: Path, layout: TableLayout, jsonl: bool) -> None:
    """The layout options that mean nothing for JSON Lines, refused by their option's name (the task file
    they would be written to does not exist yet)."""
    if not jsonl:
        return
    if not layout.header:
        raise ConfigError(f"--no-header: {source} is JSON Lines, whose keys name the columns; leave it out")
    if layout.delimiter is not None:
        raise ConfigError(f"--delimiter: {source} is JSON Lines, which has no delimiter; leave it out")


def _columns(source: Path, table: RawTable, given: list[str], header: bool,
             jsonl: bool = False) -> tuple[list[ColumnRef], ColumnRef, str]:
    """The text columns and the label column (``given``, the label last) as the task file will name them,
    each a column of ``table``, none twice; and the label column's name in ``table``. A JSON Lines
    row has keys, not positions: digits there are a key like any other."""
    refs: list[ColumnRef] = list(given) if jsonl else [column_ref(c, table, header) for c in given]
    names = []
    for ref in refs:
        name = table.column(ref)
        if name is None:
            raise DataError(f"{source}:1: {table.missing(ref)}")
        names.append(name)
    if names[-1] in names[:-1]:
        raise DataError(f"{source}:1: column '{names[-1]}' is given as --label and as --text; the label must not be "
                        "part of the input text")
    if len(names) == 3 and names[0] == names[1]:
        raise ConfigError(f"--text: column '{names[0]}' given twice")
    return refs[:-1], refs[-1], names[-1]


def _labels(source: Path, table: RawTable, column: str) -> list[str]:
    """Every row's label in ``column`` as written (spaces around it dropped, as training reads it); at
    least two distinct."""
    if not table.rows:
        raise DataError(f"{source}: no data rows")
    labels = [row[column].strip() for row in table.rows]
    empty = next((line for line, label in zip(table.lines, labels) if not label), None)
    if empty is not None:
        raise DataError(f"{source}:{empty}: empty label in column '{column}'")
    if len(set(labels)) < 2:
        raise DataError(f"{source}: column '{column}' has {len(set(labels))} distinct label(s) "
                        f"({', '.join(sorted(set(labels)))}); a classification task needs at least two")
    return labels


def _task_mapping(name: str, paths: dict[str, Path], texts: list[ColumnRef], label: ColumnRef, label_set: list[str],
                  layout: TableLayout) -> dict[str, Any]:
    """The task file's keys, in the order of the README's table; layout keys only where not the default."""
    task: dict[str, Any] = {
        "name": name,
        "files": {"train": paths["train"].name, "validation": paths["dev"].name},
        "text_columns": texts,
        "label_column": label,
        "labels": label_set,
        "metrics": ["accuracy"],
    }
    defaults = TableLayout()
    for key in ("format", "delimiter", "quoting", "header"):
        if getattr(layout, key) != getattr(defaults, key):
            task[key] = getattr(layout, key)
    if layout.column_names is not None:
        task["column_names"] = list(layout.column_names)
    return task


def stratified_split(labels: list[str], dev_fraction: float, seed: int, source: Path) -> tuple[list[int], list[int]]:
    """Row indices of the training and the dev part, each in file order.

    Each label sends ``round(n × dev_fraction)`` of its ``n`` rows to dev, at least one and never
    all, chosen by a permutation seeded with ``seed``: both parts hold every label, in about the
    file's proportions.

    Raises:
        DataError: a label with a single row (it cannot be in both parts).
    """
    rng = np.random.default_rng(seed)
    train: list[int] = []
    dev: list[int] = []
    for label in sorted(set(labels)):
        rows = [i for i, x in enumerate(labels) if x == label]
        if len(rows) < 2:
            raise DataError(f"{source}: label '{label}' has only 1 row; each label needs at least 2 (one for "
                            "training, one for dev)")
        n_dev = min(max(math.floor(len(rows) * dev_fraction + 0.5), 1), len(rows) - 1)
        chosen = rng.permutation(rows)
        dev += chosen[:n_dev].tolist()
        train += chosen[n_dev:].tolist()
    return sorted(train), sorted(dev)


def _rows_text(source: Path, table: RawTable, rows: list[int], layout: TableLayout) -> str:
    """The chosen rows of ``table`` as ``source`` is written: header line (if any) first."""
    fmt = layout.format_of(source)
    if fmt == "jsonl" or not layout.quoted(fmt):
        # One row per line: the lines as written (a JSONL value keeps its type, a field its spaces).
        lines = source_lines(source)
        kept = ([lines[0].rstrip("\r")] if fmt != "jsonl" and layout.header else [])
        return "\n".join(kept + [lines[table.lines[i] - 1].rstrip("\r") for i in rows]) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=layout.delimiter_of(fmt), lineterminator="\n")
    if layout.header:
        writer.writerow(table.columns)
    writer.writerows([[table.rows[i][c] for c in table.columns] for i in rows])
    return buffer.getvalue()


def _write_together(folder: Path, files: dict[Path, str]) -> None:
    """Write ``files`` (path -> text) so that all appear or none: each to a hidden temporary beside it,
    then renamed; a failure removes the temporaries (and ``folder``, when this created it)."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    temporaries = {path: path.with_name(f".{path.name}.partial") for path in files}
    renamed: list[Path] = []
    try:
        for path, text in files.items():
            temporaries[path].write_text(text, encoding="utf-8")
        for path, tmp in temporaries.items():
            os.replace(tmp, path)
            renamed.append(path)
    except BaseException:
        for written in [*temporaries.values(), *renamed]:  # none of them existed before
            written.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
