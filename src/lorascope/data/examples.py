"""Convert raw rows (from files or the Hub) into uniform examples: id, text_a, text_b, label.

The uniform form is a ``datasets.Dataset`` with columns ``id`` (str, stable across runs),
``text_a`` (str), ``text_b`` (str, empty for single-sentence tasks) and ``label`` (int, -1 where
the split has no labels, such as GLUE RTE test).
"""

from __future__ import annotations

from typing import Any

import datasets

from lorascope.data.readers import RawTable
from lorascope.data.tasks import TaskSpec
from lorascope.errors import DataError


def table_to_examples(spec: TaskSpec, table: RawTable, split: str) -> datasets.Dataset:
    """Validate columns and labels of ``table`` and build the uniform dataset.

    Raises:
        DataError: a missing column, a column that is both text and label, a JSON array or object in a
            column the task reads, an empty text or id, a label outside the label set, or no rows,
            naming the file and line.
    """
    path = table.path
    needed = list(spec.text_columns)
    label_column = table.column(spec.label_column)
    has_labels = label_column is not None
    if not has_labels and split != "test":
        needed.append(spec.label_column)
    if spec.id_column is not None:
        needed.append(spec.id_column)
    missing = [c for c in needed if table.column(c) is None]
    if missing:
        raise DataError(f"{path}:1: {table.missing(missing[0])}")
    _check_scalar_columns(table, [table.column(c) for c in (*spec.text_columns, spec.label_column, spec.id_column)
                                  if c is not None])
    if not table.rows:
        raise DataError(f"{path}: the {split} split has no rows")
    # Every text column exists (checked above): none of these is None.
    text_columns = [col for col in map(table.column, spec.text_columns) if col is not None]
    # The task file refuses the same reference twice; a name and a position of one column show only here.
    if has_labels and label_column in text_columns:
        raise DataError(f"{path}:1: column '{label_column}' is both the task's label column and a text column; "
                        "the label must not be part of the input text")
    if len(set(text_columns)) != len(text_columns):
        raise DataError(f"{path}:1: column '{text_columns[0]}' is both text columns of the task")
    id_column = table.column(spec.id_column) if spec.id_column is not None else None
    ids, text_a, text_b, labels = [], [], [], []
    seen: set[str] = set()
    for row_no, (row, line) in enumerate(zip(table.rows, table.lines)):
        texts = []
        for col in text_columns:
            value = row.get(col)
            if value is None or value.strip() == "":
                raise DataError(f"{path}:{line}: empty text in column '{col}'")
            texts.append(value)
        if id_column and not row[id_column].strip():
            raise DataError(f"{path}:{line}: empty id in column '{id_column}' (every row needs its own id)")
        example_id = f"{split}-{row[id_column] if id_column else row_no}"
        if example_id in seen:
            raise DataError(f"{path}:{line}: duplicate id '{example_id}' in column '{id_column}'")
        seen.add(example_id)
        if label_column is not None:  # has_labels
            raw = row[label_column].strip()
            if raw not in spec.raw_labels:
                raise DataError(
                    f"{path}:{line}: label '{raw}' in column '{label_column}' is not one of "
                    f"{sorted(spec.raw_labels)}"
                )
            labels.append(spec.raw_labels[raw])
        else:
            labels.append(-1)
        ids.append(example_id)
        text_a.append(texts[0])
        text_b.append(texts[1] if spec.is_pair else "")
    return _to_dataset(ids, text_a, text_b, labels)


def _check_scalar_columns(table: RawTable, columns: list[str | None]) -> None:
    """A JSON Lines column the task reads holds strings, numbers or booleans: an array or object would
    otherwise be read as its JSON text, a text the model was never meant to see."""
    for col in columns:
        if col is not None and col in table.structured:
            raise DataError(f"{table.path}:{table.structured[col]}: column '{col}' holds a JSON array or object; "
                            "expected a string or a number")


def hub_to_examples(spec: TaskSpec, ds: datasets.Dataset, split: str) -> datasets.Dataset:
    """Convert a Hugging Face GLUE split (columns e.g. ``sentence1, sentence2, label, idx``).

    The Hub's GLUE configs already use lorascope's label ids; ``idx`` is the row number in
    GLUE's TSV, so ids agree between the two sources.
    """
    columns = _HUB_COLUMNS.get(spec.name)
    if columns is None:
        raise DataError(f"task '{spec.name}' has no Hub mapping")
    missing = [c for c in (*columns, "label", "idx") if c not in ds.column_names]
    if missing:
        raise DataError(f"Hub dataset {spec.hub}: split '{split}' lacks column '{missing[0]}'")
    if len(ds) == 0:
        raise DataError(f"Hub dataset {spec.hub}: split '{split}' has no rows")
    text_a = [str(x) for x in ds[columns[0]]]
    text_b = [str(x) for x in ds[columns[1]]] if len(columns) == 2 else [""] * len(ds)
    labels = [int(x) for x in ds["label"]]
    bad = [x for x in labels if x != -1 and not 0 <= x < spec.num_labels]
    if bad:
        raise DataError(f"Hub dataset {spec.hub}: split '{split}' has label {bad[0]} outside 0..{spec.num_labels - 1}")
    ids = [f"{split}-{int(i)}" for i in ds["idx"]]
    return _to_dataset(ids, text_a, text_b, labels)


_HUB_COLUMNS: dict[str, tuple[str, ...]] = {
    "mrpc": ("sentence1", "sentence2"),
    "sst2": ("sentence",),
    "rte": ("sentence1", "sentence2"),
}


def texts_to_examples(texts: list[str] | list[list[str]] | list[tuple[str, str]]) -> tuple[datasets.Dataset, bool]:
    """Raw texts (all single, or all ``[text_a, text_b]`` pairs) as the uniform dataset, unlabelled.

    Returns:
        The dataset (ids ``text-<i>``, label -1) and whether the texts are pairs.

    Raises:
        DataError: no texts, a mix of singles and pairs, a pair without exactly two texts, an empty text.
    """
    if not texts:
        raise DataError("no texts given")
    is_pair = not isinstance(texts[0], str)
    a, b = [], []
    for i, item in enumerate(texts):
        if isinstance(item, str) == is_pair:
            raise DataError(f"texts[{i}]: give all single texts or all [text_a, text_b] pairs, not a mix")
        parts = [item] if isinstance(item, str) else list(item)
        if is_pair and len(parts) != 2:
            raise DataError(f"texts[{i}]: a pair must be [text_a, text_b], got {len(parts)} texts")
        if any(not isinstance(t, str) or not t.strip() for t in parts):
            raise DataError(f"texts[{i}]: empty or not text")
        a.append(parts[0])
        b.append(parts[1] if is_pair else "")
    return _to_dataset([f"text-{i}" for i in range(len(a))], a, b, [-1] * len(a)), is_pair


def _to_dataset(ids: list[str], text_a: list[str], text_b: list[str], labels: list[int]) -> datasets.Dataset:
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "text_a": datasets.Value("string"),
            "text_b": datasets.Value("string"),
            "label": datasets.Value("int64"),
        }
    )
    data: dict[str, Any] = {"id": ids, "text_a": text_a, "text_b": text_b, "label": labels}
    return datasets.Dataset.from_dict(data, features=features)
