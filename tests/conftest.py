"""Shared fixtures: the shipped GLUE data, tiny models, quiet libraries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GLUE_DIR = Path(os.environ.get("GLUE_DIR", REPO.parent / "shared" / "data" / "glue"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _quiet():
    from lorascope.cli.common import console, quiet_libraries

    quiet_libraries()
    # The command line's console takes its width from $COLUMNS once, when first imported, so a
    # test's env={"COLUMNS": ...} only reaches it if that test happens to import it first: wide for
    # every test instead, so that what a test reads is never wrapped, in whatever order tests run.
    console.width = 400


@pytest.fixture()
def glue_dir(monkeypatch) -> Path:
    if not (GLUE_DIR / "MRPC" / "dev.tsv").is_file():
        pytest.skip(f"GLUE data not found at {GLUE_DIR}")
    monkeypatch.setenv("GLUE_DIR", str(GLUE_DIR))
    return GLUE_DIR


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture()
def csv_task(tmp_path) -> Path:
    """A user task: CSV files with quoted commas and a YAML description."""
    rows = ["text,label"] + [f'"great, really {i}",pos' if i % 2 else f"bad movie {i},neg" for i in range(40)]
    write(tmp_path / "train.csv", "\n".join(rows) + "\n")
    write(tmp_path / "dev.csv", "\n".join(rows[:21]) + "\n")
    return write(
        tmp_path / "task.yaml",
        "name: toy\nfiles: {train: train.csv, validation: dev.csv}\ntext_columns: [text]\nlabel_column: label\n",
    )


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models gain nothing from threads, and a descheduled worker thread only adds noise."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def baselines_record(majorities: dict[str, dict[str, float]]):
    """A baselines record with only the majority scores set (task -> metric -> value), for report tests."""
    from lorascope.records import Baseline, BaselinesRecord

    return BaselinesRecord.create(baselines=[
        Baseline(task=t, n_dev=300, majority_label="0", majority=m, random_mean={}, random_sd={}, random_draws=0)
        for t, m in majorities.items()])
