"""Task specifications: which columns hold the text and label, the label set, the metrics.

GLUE tasks keep the label ids of the Hugging Face ``nyu-mll/glue`` dataset so results are
comparable with everything else built on it. User tasks are described by a small YAML file
(see ``configs/tasks/example_csv.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorascope.config import load_yaml
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


def load_task_file(path: Path) -> TaskSpec:
    """Read a user task description.

    Keys: ``name``, ``files`` (split -> path, relative to the YAML file; ``train`` and
    ``validation`` required), ``text_columns`` (1 or 2), ``label_column``, optional ``labels``
    (names in id order; default: sorted distinct labels of the training file), ``metrics``,
    ``main_metric``, ``id_column``.
    """
    data = load_yaml(path)
    allowed = {"name", "files", "text_columns", "label_column", "labels", "metrics", "main_metric", "id_column"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}' (allowed: {sorted(allowed)})")
    for key in ("name", "files", "text_columns", "label_column"):
        if key not in data:
            raise ConfigError(f"{path}: missing required key '{key}'")
    files = data["files"]
    if not isinstance(files, dict) or not {"train", "validation"} <= set(files):
        raise ConfigError(f"{path}: 'files' must map at least 'train' and 'validation' to file paths")
    bad_split = sorted(set(files) - set(SPLITS))
    if bad_split:
        raise ConfigError(f"{path}: files: unknown split '{bad_split[0]}' (expected {list(SPLITS)})")
    text_columns = data["text_columns"]
    if isinstance(text_columns, str):
        text_columns = [text_columns]
    if not isinstance(text_columns, list) or not 1 <= len(text_columns) <= 2:
        raise ConfigError(f"{path}: 'text_columns' must list one or two column names")
    metrics = tuple(data.get("metrics", ["accuracy"]))
    for m in metrics:
        if m not in SUPPORTED_METRICS:
            raise ConfigError(f"{path}: metrics: unknown metric '{m}' (expected {list(SUPPORTED_METRICS)})")
    main_metric = data.get("main_metric", metrics[0])
    if main_metric not in metrics:
        raise ConfigError(f"{path}: main_metric '{main_metric}' is not in metrics {list(metrics)}")
    base = path.resolve().parent
    resolved = {split: str((base / f).resolve()) for split, f in files.items()}
    labels = data.get("labels")
    if labels is None:
        # Deferred: the reader fills the label set from the training file.
        label_names: tuple[str, ...] = ()
    else:
        label_names = tuple(str(x) for x in labels)
        if len(set(label_names)) != len(label_names) or len(label_names) < 2:
            raise ConfigError(f"{path}: 'labels' must list at least two distinct label names")
    if "f1" in metrics and label_names and len(label_names) != 2:
        raise ConfigError(f"{path}: metric 'f1' needs exactly two labels, got {len(label_names)}")
    return TaskSpec(
        name=str(data["name"]),
        text_columns=tuple(str(c) for c in text_columns),
        label_column=str(data["label_column"]),
        label_names=label_names,
        raw_labels={n: i for i, n in enumerate(label_names)},
        metrics=metrics,
        main_metric=main_metric,
        files=resolved,
        id_column=data.get("id_column"),
    )
