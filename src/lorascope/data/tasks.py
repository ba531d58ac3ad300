"""Task specifications: which columns hold the text and label, the label set, the metrics.

GLUE tasks keep the label ids of the Hugging Face ``nyu-mll/glue`` dataset so results are
comparable with everything else built on it. User tasks are described by a small YAML file
(see ``configs/tasks/example_csv.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Len
from pydantic import BeforeValidator, Field, StringConstraints, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from lorascope.config import StrictModel, describe_validation_error, load_yaml
from lorascope.errors import ConfigError

SPLITS = ("train", "validation", "test")
SUPPORTED_METRICS = ("accuracy", "f1", "matthews")


@dataclass(frozen=True)
class TaskSpec:
    """How to read one classification task and how to score it.

    Attributes:
        name: short id (``mrpc``).
        text_columns: one column (single sentence) or two (sentence pair), as named in the files.
        label_column: the column with the gold label.
        label_names: label id -> name; the id is the position.
        raw_labels: the label as written in the file -> label id.
        metrics: metrics to report; ``main_metric`` drives model selection and HPO.
        glue_folder: folder name inside a GLUE directory (``MRPC``), None for user tasks.
        hub: ``(dataset, config)`` on the Hugging Face Hub, None for user tasks.
        files: split -> file path, for user tasks.
        id_column: column holding a stable example id; None uses the data-row number.
    """

    name: str
    text_columns: tuple[str, ...]
    label_column: str
    label_names: tuple[str, ...]
    raw_labels: dict[str, int]
    metrics: tuple[str, ...] = ("accuracy",)
    main_metric: str = "accuracy"
    glue_folder: str | None = None
    hub: tuple[str, str] | None = None
    files: dict[str, str] = field(default_factory=dict)
    id_column: str | None = None

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
    """A registered GLUE task by name (``sst2``, ``SST-2`` …) or a user task YAML file."""
    key = name_or_path.lower().replace("-", "").replace("_", "")
    if key in GLUE_TASKS:
        return GLUE_TASKS[key]
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return load_task_file(p)
    raise ConfigError(
        f"task '{name_or_path}': expected one of {sorted(GLUE_TASKS)} or a task YAML file (*.yaml)"
    )


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
# File paths are text as written: a number is a typo, not a file name.
FilePath = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Metric = Literal[SUPPORTED_METRICS]


class TaskFile(StrictModel):
    """The keys of a user task YAML file; wrong types and unknown keys are errors naming the key."""

    name: Name
    files: dict[Literal[SPLITS], FilePath] = Field(
        description="split -> data file, relative to the YAML file; train and validation are required")
    text_columns: Annotated[list[Name], BeforeValidator(_one_or_list), Len(min_length=1, max_length=2)]
    label_column: Name
    labels: Annotated[list[Name], Len(min_length=2)] | None = Field(None, description="label names in id order")
    metrics: Annotated[list[Metric], BeforeValidator(_one_or_list), Len(min_length=1)] = ["accuracy"]
    main_metric: Metric | None = None
    id_column: Name | None = None

    @field_validator("labels", "text_columns", "metrics")
    @classmethod
    def _distinct(cls, values: list[str] | None) -> list[str] | None:
        if values is not None and len(set(values)) != len(values):
            raise ValueError("entries must be distinct")
        return values


def load_task_file(path: Path) -> TaskSpec:
    """Read a user task description.

    Keys: ``name``, ``files`` (split -> path, relative to the YAML file; ``train`` and
    ``validation`` required), ``text_columns`` (1 or 2), ``label_column``, optional ``labels``
    (names in id order; default: sorted distinct labels of the training file), ``metrics``,
    ``main_metric``, ``id_column``. See :class:`TaskFile`.

    Raises:
        ConfigError: naming the file and the key: unreadable or malformed YAML, an unknown or
            missing key, a wrong type, inconsistent metrics, a data path that is a folder.
    """
    data = load_yaml(path, what="task file")
    try:
        spec = TaskFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, str(path))) from None
    if not {"train", "validation"} <= set(spec.files):
        raise ConfigError(f"{path}: 'files' must map at least 'train' and 'validation' to file paths")
    main_metric = spec.main_metric or spec.metrics[0]
    if main_metric not in spec.metrics:
        raise ConfigError(f"{path}: main_metric '{main_metric}' is not in metrics {spec.metrics}")
    label_names = tuple(spec.labels or ())  # empty: the reader fills the label set from the training file
    if "f1" in spec.metrics and label_names and len(label_names) != 2:
        raise ConfigError(f"{path}: metric 'f1' needs exactly two labels, got {len(label_names)}")
    base = path.resolve().parent
    resolved = {split: (base / f).resolve() for split, f in spec.files.items()}
    for split, file in resolved.items():
        if file.is_dir():
            raise ConfigError(f"{path}: 'files.{split}': {file} is a directory, expected a data file")
    return TaskSpec(
        name=spec.name,
        text_columns=tuple(spec.text_columns),
        label_column=spec.label_column,
        label_names=label_names,
        raw_labels={n: i for i, n in enumerate(label_names)},
        metrics=tuple(spec.metrics),
        main_metric=main_metric,
        files={split: str(file) for split, file in resolved.items()},
        id_column=spec.id_column,
    )
