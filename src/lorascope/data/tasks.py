"""Task specifications: which columns hold the text and label, the label set, the metrics.

GLUE tasks keep the label ids of the Hugging Face ``nyu-mll/glue`` dataset so results are
comparable with everything else built on it. User tasks are described by a small YAML file
(see ``configs/tasks/example_csv.yaml``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from annotated_types import Len
from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, StringConstraints, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from lorascope.config import StrictModel, describe_validation_error, load_yaml
from lorascope.data.readers import TableLayout
from lorascope.errors import ConfigError
from lorascope.run_folder import RunFolder

# A column is named as in the file's header, or given by its 0-based position.
ColumnRef = str | int

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = get_args(Split)
# A task's name is its identity: it names run folders (<name>-<method>-s<seed>), result folders and
# served adapters, so it takes an adapter name's characters and leaves room for a "-s<seed>" suffix.
TASK_NAME = re.compile(r"[A-Za-z0-9_-]{1,48}")
# Metric names a task may ask for; their definitions live in lorascope.metrics.
Metric = Literal["accuracy", "f1", "macro_f1", "weighted_f1", "matthews"]
SUPPORTED_METRICS: tuple[Metric, ...] = get_args(Metric)


@dataclass(frozen=True)
class TaskSpec:
    """How to read one classification task and how to score it.

    Attributes:
        name: short id (``mrpc``).
        text_columns: one column (single sentence) or two (sentence pair), by name or 0-based position.
        label_column: the column with the gold label (name or position).
        label_names: label id -> name; the id is the position.
        raw_labels: the label as written in the file -> label id.
        metrics: metrics to report; ``main_metric`` drives model selection and HPO.
        glue_folder: folder name inside a GLUE directory (``MRPC``), None for user tasks.
        hub: ``(dataset, config)`` on the Hugging Face Hub, None for user tasks.
        files: split -> file path, for user tasks.
        id_column: column holding a stable example id; None uses the data-row number.
        layout: how the files are written (format, delimiter, quoting, header).
    """

    name: str
    text_columns: tuple[ColumnRef, ...]
    label_column: ColumnRef
    label_names: tuple[str, ...]
    raw_labels: dict[str, int]
    metrics: tuple[str, ...] = ("accuracy",)
    main_metric: str = "accuracy"
    glue_folder: str | None = None
    hub: tuple[str, str] | None = None
    files: dict[str, str] = field(default_factory=dict)
    id_column: ColumnRef | None = None
    layout: TableLayout = TableLayout()

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


GLUE_TASKS: dict[str, TaskSpec] = {
    "mrpc": TaskSpec(
        name="mrpc",
        text_columns=("#1 String", "#2 String"),
        label_column="Quality",
        label_names=("not_equivalent", "equivalent"),
        raw_labels={"0": 0, "1": 1},
        metrics=("f1", "accuracy"),
        main_metric="f1",
        glue_folder="MRPC",
        hub=("nyu-mll/glue", "mrpc"),
    ),
    "sst2": TaskSpec(
        name="sst2",
        text_columns=("sentence",),
        label_column="label",
        label_names=("negative", "positive"),
        raw_labels={"0": 0, "1": 1},
        metrics=("accuracy",),
        main_metric="accuracy",
        glue_folder="SST-2",
        hub=("nyu-mll/glue", "sst2"),
    ),
    "rte": TaskSpec(
        name="rte",
        text_columns=("sentence1", "sentence2"),
        label_column="label",
        label_names=("entailment", "not_entailment"),
        raw_labels={"entailment": 0, "not_entailment": 1},
        metrics=("accuracy",),
        main_metric="accuracy",
        glue_folder="RTE",
        hub=("nyu-mll/glue", "rte"),
        id_column="index",
    ),
}


def get_task(name_or_path: str) -> TaskSpec:
    """A registered GLUE task by name (``sst2``, ``SST-2`` …), a user task YAML file, or a training
    run folder (the task its ``metrics.json`` records)."""
    key = name_or_path.lower().replace("-", "").replace("_", "")
    if key in GLUE_TASKS:
        return GLUE_TASKS[key]
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return load_task_file(p)
    if RunFolder.holds_run(p):
        return task_of_run(p)
    raise ConfigError(
        f"task '{name_or_path}': expected one of {sorted(GLUE_TASKS)}, a task YAML file (*.yaml) or a training run folder"
    )


def task_of_run(folder: Path) -> TaskSpec:
    """The task a training run was trained on, from its ``metrics.json``.

    Raises:
        ConfigError: the file is unreadable or records no task lorascope can rebuild.
    """
    run = RunFolder(folder)
    spec = recorded_task(run.raw())
    if spec is not None:
        return spec
    path = run.metrics_path
    raise ConfigError(f"{path}: records no task lorascope can rebuild (a run made before tasks were recorded); "
                      "give the task's name or YAML file")


def recorded_task(info: dict[str, Any]) -> TaskSpec | None:
    """The task a run's ``metrics.json`` (or an adapter sidecar) records: its full record, else a GLUE
    task by name; None when it records neither."""
    record = info.get("task_spec")
    if isinstance(record, dict):
        try:
            return task_from_record(record)
        except ConfigError:
            return None
    task = info.get("task")
    return GLUE_TASKS.get(task) if isinstance(task, str) else None


def task_record(spec: TaskSpec) -> dict[str, Any]:
    """A JSON-ready record of ``spec`` (kept in every run's ``metrics.json``): enough to rebuild it."""
    return {k: _json_native(v) for k, v in dataclasses.asdict(spec).items()}


def _json_native(value: Any) -> Any:
    """Tuples as lists, recursively: the record equals what reading its JSON back gives."""
    if isinstance(value, dict):
        return {k: _json_native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_native(v) for v in value]
    return value


def task_from_record(record: dict[str, Any]) -> TaskSpec:
    """The task a run was trained on, from its :func:`task_record` (GLUE tasks resolve to the registry).

    Raises:
        ConfigError: the record is not a task record.
    """
    if record.get("glue_folder") and record.get("name") in GLUE_TASKS:
        return GLUE_TASKS[record["name"]]
    try:
        layout = TableLayout(**{**record.get("layout", {}), "column_names": _tuple(record.get("layout", {}).get("column_names"))})
        return TaskSpec(
            **{k: v for k, v in record.items() if k not in ("layout", "text_columns", "label_names", "metrics", "hub")},
            text_columns=tuple(record["text_columns"]),
            label_names=tuple(record["label_names"]),
            metrics=tuple(record["metrics"]),
            layout=layout,
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"not a task record ({exc})") from None


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _text(value: Any) -> Any:
    """A scalar written in YAML as the text it stands for: ``labels: [0, 1]`` means the labels "0" and "1".

    Booleans are refused: YAML 1.1 reads ``yes``/``no``/``on``/``off`` as true/false, and a label
    or column silently renamed "True" would never match the file.
    """
    if isinstance(value, bool):
        raise PydanticCustomError("yaml_boolean", "YAML reads yes/no/on/off/true/false as a boolean; quote the name")
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _one_or_list(value: Any) -> Any:
    # A single name may be written without brackets: text_columns: sentence.
    return [value] if isinstance(value, str) else value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), BeforeValidator(_text)]


def _task_name(value: str) -> str:
    if not TASK_NAME.fullmatch(value):
        raise PydanticCustomError("task_name", "a task name is 1 to 48 letters, digits, '_' or '-' (it names run "
                                  "folders and adapters)")
    return value


TaskName = Annotated[Name, AfterValidator(_task_name)]


def _column(value: Any) -> str | int:
    """A column reference: its header name (text) or its 0-based position (a non-negative integer)."""
    if isinstance(value, bool):
        raise PydanticCustomError("yaml_boolean", "YAML reads yes/no/on/off/true/false as a boolean; quote the name")
    if isinstance(value, int):
        if value < 0:
            raise PydanticCustomError("column_position", "a column position counts from 0 (got {value})", {"value": value})
        return value
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise PydanticCustomError("column", "expected a column name (text) or a 0-based column position (integer)")


Column = Annotated[str | int, PlainValidator(_column, json_schema_input_type=str | int)]
# File paths are text as written: a number is a typo, not a file name.
FilePath = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class TaskFile(StrictModel):
    """The keys of a user task YAML file; wrong types and unknown keys are errors naming the key."""

    name: TaskName = Field(description="the task's identity: run folders, results and adapters are named by it")
    files: dict[Split, FilePath] = Field(
        description="split -> data file, relative to the YAML file; train and validation are required")
    text_columns: Annotated[list[Column], BeforeValidator(_one_or_list), Len(min_length=1, max_length=2)] = Field(
        description="one column (single text) or two (sentence pair): header names, or 0-based positions")
    label_column: Column = Field(description="the column with the gold label: header name or 0-based position")
    id_column: Column | None = Field(None, description="a column with a stable example id (default: the data-row number)")
    labels: Annotated[list[Name], Len(min_length=2)] | None = Field(
        None, description="the labels as written in the file, in id order (default: sorted distinct training labels)")
    label_names: Annotated[dict[Name, Name], Len(min_length=2)] | None = Field(
        None, description="label as written in the file -> display name, in id order ({0: negative, 1: positive})")
    metrics: Annotated[list[Metric], BeforeValidator(_one_or_list), Len(min_length=1)] = Field(
        ["accuracy"], description=f"any of {', '.join(SUPPORTED_METRICS)}")
    main_metric: Metric | None = Field(None, description="drives model selection and HPO (default: the first metric)")
    format: Literal["csv", "tsv", "jsonl"] | None = Field(None, description="default: from each file's extension")
    delimiter: Annotated[str, StringConstraints(min_length=1, max_length=1)] | None = Field(
        None, description="one character (default: ',' for csv, tab for tsv)")
    quoting: bool | None = Field(None, description="fields may be quoted (default: true for csv, false for tsv as in GLUE)")
    header: bool = Field(True, description="the first line names the columns")
    column_names: Annotated[list[Name], Len(min_length=1)] | None = Field(
        None, description="names for the columns of a file without a header (header: false)")

    @field_validator("labels", "text_columns", "metrics", "column_names")
    @classmethod
    def _distinct(cls, values: list[str] | None) -> list[str] | None:
        if values is not None and len(set(values)) != len(values):
            raise ValueError("entries must be distinct")
        return values

    @field_validator("label_names")
    @classmethod
    def _distinct_names(cls, mapping: dict[str, str] | None) -> dict[str, str] | None:
        if mapping is not None and len(set(mapping.values())) != len(mapping):
            raise ValueError("names must be distinct")
        return mapping


def _check_layout(path: Path, spec: TaskFile) -> None:
    """Layout keys that contradict each other or the format, named."""
    if spec.column_names is not None and spec.header:
        raise ConfigError(f"{path}: 'column_names' names the columns of a file without a header: set 'header: false'")
    if spec.labels is not None and spec.label_names is not None:
        raise ConfigError(f"{path}: give 'labels' or 'label_names', not both")
    formats = {spec.format} if spec.format else {Path(f).suffix.lower() for f in spec.files.values()}
    if formats & {"jsonl", ".jsonl", ".json"}:
        for key in ("delimiter", "quoting", "column_names"):
            if getattr(spec, key) is not None:
                raise ConfigError(f"{path}: '{key}' does not apply to JSONL files (their keys name the columns)")
        if not spec.header:
            raise ConfigError(f"{path}: 'header: false' does not apply to JSONL files (their keys name the columns)")
        refs = [*spec.text_columns, spec.label_column, spec.id_column]
        if any(isinstance(r, int) for r in refs):
            raise ConfigError(f"{path}: JSONL rows have no column order: name the key instead of a position")
    if spec.column_names is not None:
        for ref in (*spec.text_columns, spec.label_column, spec.id_column):
            if isinstance(ref, str) and ref not in spec.column_names:
                raise ConfigError(f"{path}: column '{ref}' is not one of column_names ({', '.join(spec.column_names)})")


def _column_name(ref: ColumnRef, spec: TaskFile) -> ColumnRef:
    """The header name a reference stands for where the task file alone tells it (a headerless file's
    positions), else the reference itself: a header file's positions are only known from the file."""
    if isinstance(ref, int) and not spec.header:
        names = spec.column_names
        return (names[ref] if ref < len(names) else ref) if names is not None else str(ref)
    return ref


def _check_label_not_text(path: Path, spec: TaskFile) -> None:
    """The label column is no text column: a model that reads its label as input learns nothing."""
    label = _column_name(spec.label_column, spec)
    texts = [_column_name(ref, spec) for ref in spec.text_columns]
    if label in texts:
        raise ConfigError(f"{path}: column {_shown_ref(label)} is both 'label_column' and in 'text_columns'; "
                          "the label must not be part of the input text")
    if len(set(texts)) != len(texts):
        raise ConfigError(f"{path}: 'text_columns' names column {_shown_ref(texts[0])} twice")


def _shown_ref(ref: ColumnRef) -> str:
    return f"at position {ref}" if isinstance(ref, int) else f"'{ref}'"


def load_task_file(path: Path) -> TaskSpec:
    """Read a user task description (every key: :class:`TaskFile`; examples: the README's "Your own data").

    Raises:
        ConfigError: naming the file and the key: unreadable or malformed YAML, an unknown or
            missing key, a wrong type, inconsistent metrics or layout keys, a column that is both text
            and label, a data path that is a folder.
    """
    return task_from_mapping(load_yaml(path, what="task file"), path)


def task_from_mapping(data: dict[str, Any], path: Path) -> TaskSpec:
    """The task a task file at ``path`` holding ``data`` describes (see :func:`load_task_file`)."""
    try:
        spec = TaskFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, str(path))) from None
    if not {"train", "validation"} <= set(spec.files):
        raise ConfigError(f"{path}: 'files' must map at least 'train' and 'validation' to file paths")
    _check_layout(path, spec)
    _check_label_not_text(path, spec)
    main_metric = spec.main_metric or spec.metrics[0]
    if main_metric not in spec.metrics:
        raise ConfigError(f"{path}: main_metric '{main_metric}' is not in metrics {spec.metrics}")
    if spec.label_names is not None:
        raw_labels = {raw: i for i, raw in enumerate(spec.label_names)}
        label_names = tuple(spec.label_names.values())
    else:
        label_names = tuple(spec.labels or ())  # empty: the reader fills the label set from the training file
        raw_labels = {n: i for i, n in enumerate(label_names)}
    if "f1" in spec.metrics and label_names and len(label_names) != 2:
        raise ConfigError(f"{path}: metric 'f1' (binary) needs exactly two labels, got {len(label_names)}; "
                          "use macro_f1 or weighted_f1")
    base = path.resolve().parent
    resolved = {split: (base / f).resolve() for split, f in spec.files.items()}
    for split, file in resolved.items():
        if file.is_dir():
            raise ConfigError(f"{path}: 'files.{split}': {file} is a directory, expected a data file")
    layout = TableLayout(format=spec.format, delimiter=spec.delimiter, quoting=spec.quoting, header=spec.header,
                         column_names=tuple(spec.column_names) if spec.column_names else None)
    return TaskSpec(
        name=spec.name,
        text_columns=tuple(spec.text_columns),
        label_column=spec.label_column,
        label_names=label_names,
        raw_labels=raw_labels,
        metrics=tuple(spec.metrics),
        main_metric=main_metric,
        files={split: str(file) for split, file in resolved.items()},
        id_column=spec.id_column,
        layout=layout,
    )
