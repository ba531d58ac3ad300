"""Resolve where a task's data comes from and load its splits.

Sources, in order: the task's own files (user tasks); a GLUE directory in GLUE's TSV layout
(``data_dir`` or the ``GLUE_DIR`` environment variable); the Hugging Face Hub dataset
``nyu-mll/glue`` (needs network access).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import datasets
import numpy as np

from lorascope.data.examples import hub_to_examples, table_to_examples
from lorascope.data.readers import read_table
from lorascope.data.tasks import TaskSpec
from lorascope.errors import DataError

_GLUE_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


def resolve_glue_dir(data_dir: str | Path | None) -> Path | None:
    """``data_dir`` if given, else ``$GLUE_DIR``, else None (meaning: use the Hub)."""
    chosen = data_dir or os.environ.get("GLUE_DIR")
    if not chosen:
        return None
    p = Path(chosen).expanduser()
    if not p.is_dir():
        source = "data_dir" if data_dir else "GLUE_DIR"
        raise DataError(f"{p}: {source} is not a directory (expected GLUE's layout: <dir>/MRPC/train.tsv …)")
    return p


def load_split(spec: TaskSpec, split: str, data_dir: str | Path | None = None) -> datasets.Dataset:
    """One split of a task as the uniform dataset (see ``lorascope.data.examples``)."""
    if split not in _GLUE_FILES:
        raise DataError(f"unknown split '{split}' (expected {list(_GLUE_FILES)})")
    if spec.files:
        if split not in spec.files:
            raise DataError(f"task '{spec.name}' has no file for split '{split}'")
        path = Path(spec.files[split])
        return table_to_examples(with_label_set(spec, data_dir), read_table(path, layout=spec.layout), split)
    glue_dir = resolve_glue_dir(data_dir)
    if glue_dir is not None:
        if spec.glue_folder is None:
            raise DataError(f"task '{spec.name}' is not a GLUE task")
        path = glue_dir / spec.glue_folder / _GLUE_FILES[split]
        return table_to_examples(spec, read_table(path, glue=True), split)
    return _load_from_hub(spec, split)


def with_label_set(spec: TaskSpec, data_dir: str | Path | None = None) -> TaskSpec:
    """For a user task without ``labels``: the sorted distinct labels of its training file."""
    if spec.label_names or not spec.files:
        return spec
    table = read_table(Path(spec.files["train"]), layout=spec.layout)
    column = table.column(spec.label_column)
    if column is None:
        raise DataError(f"{table.path}:1: {table.missing(spec.label_column)}")
    names = sorted({r[column].strip() for r in table.rows})
    if len(names) < 2:
        raise DataError(f"{table.path}: column '{column}' has fewer than two distinct labels")
    if "f1" in spec.metrics and len(names) != 2:
        raise DataError(f"{table.path}: metric 'f1' (binary) needs exactly two labels, found {len(names)}: "
                        f"{names[:5]}; use macro_f1 or weighted_f1")
    return dataclasses.replace(spec, label_names=tuple(names), raw_labels={n: i for i, n in enumerate(names)})


# One quick request before load_dataset: when the Hub cannot be reached, load_dataset retries for
# half a minute and prints a warning per attempt before it fails.
_HUB_PROBE_TIMEOUT_S = 10


def _probe_hub(spec: TaskSpec) -> None:
    """Fail in seconds, in one line saying what to set, when the Hub cannot be reached (offline mode reads the cache)."""
    if datasets.config.HF_HUB_OFFLINE or spec.hub is None:
        return
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        HfApi().dataset_info(spec.hub[0], timeout=_HUB_PROBE_TIMEOUT_S)
    except HfHubHTTPError:
        return  # the Hub answered: load_dataset reports what it said
    except Exception as exc:  # the transport's connection and timeout errors
        layout = f"<folder holding {spec.glue_folder}/train.tsv …>" if spec.glue_folder else "<a GLUE folder>"
        raise DataError(f"task '{spec.name}': GLUE_DIR is not set and the Hugging Face Hub cannot be reached "
                        f"({type(exc).__name__}): set GLUE_DIR={layout}, or HF_DATASETS_OFFLINE=1 to read a copy "
                        "in the Hugging Face cache") from None


def _load_from_hub(spec: TaskSpec, split: str) -> datasets.Dataset:
    if spec.hub is None:
        raise DataError(f"task '{spec.name}' has no data source: give data_dir or set GLUE_DIR")
    _probe_hub(spec)
    try:
        ds = datasets.load_dataset(*spec.hub, split=split)
    except Exception as exc:  # network, auth or missing dataset: all mean "cannot load from the Hub"
        raise DataError(
            f"could not load {spec.hub[0]}/{spec.hub[1]} from the Hub ({exc.__class__.__name__}); "
            "set GLUE_DIR (or data_dir) to a local GLUE folder"
        ) from None
    return hub_to_examples(spec, ds, split)


def subsample(ds: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """A deterministic subset of ``limit`` rows chosen by ``seed``, kept in file order.

    File order is kept so that a subset is a stable, readable list of ids, and a larger limit
    with the same seed does not reshuffle what the smaller one chose more than needed.
    """
    if limit is None or limit >= len(ds):
        return ds
    if limit <= 0:
        raise DataError(f"limit must be positive, got {limit}")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(ds), size=limit, replace=False))
    return ds.select(idx.tolist())
