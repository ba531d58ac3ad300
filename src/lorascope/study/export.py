"""``export_records``: a study's results without its weights, to publish beside its report.

What is copied is every record the report is built from (the study's ``config.yaml``, timings,
baselines and sanity records; each run's ``metrics.json``, ``config.yaml`` and ``provenance.json``;
each analysis's JSON and CSV files), so that ``lorascope report`` on the copy rebuilds the report
with the same numbers. What is left out is what only a model or a rerun needs: weights and
tokenizers (``model/``, ``adapter/``, ``checkpoint-*``), cached representations (``reps/``), the
report itself (it is rebuilt), unfinished ``.partial`` folders and the HPO's storage.
"""

from __future__ import annotations

import os
from pathlib import Path

from lorascope.artifacts import new_folder
from lorascope.errors import ConfigError

RECORD_SUFFIXES = (".json", ".yaml", ".csv")
LEFT_OUT_FOLDERS = ("model", "adapter", "reps", "report")


def _left_out(relative: Path) -> bool:
    folders = relative.parts[:-1]
    return any(part in LEFT_OUT_FOLDERS or part.startswith("checkpoint-") or part.endswith(".partial")
               or part.startswith(".") for part in folders)


def record_files(study: Path) -> list[Path]:
    """The record files of ``study``, relative to it, sorted."""
    return sorted(path.relative_to(study) for path in study.rglob("*")
                  if path.is_file() and path.suffix in RECORD_SUFFIXES and not _left_out(path.relative_to(study)))


def export_records(study: Path, dest: Path) -> list[Path]:
    """Copy ``study``'s records to ``dest`` (a new folder), written whole or not at all.

    Paths under the current working directory are written relative to it, and others under the home
    directory as ``~/…``, so that a published copy does not name the machine's folders.

    Returns:
        The copied files, relative to ``dest``.

    Raises:
        ConfigError: ``dest`` exists, or ``study`` has no record.
    """
    files = record_files(study)
    if not files:
        raise ConfigError(f"{study}: no records to export (no *.json, *.yaml or *.csv outside weights)")
    here, home = f"{Path.cwd()}{os.sep}", f"{Path.home()}{os.sep}"
    with new_folder(dest) as partial:
        for relative in files:
            target = partial / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            text = (study / relative).read_text(encoding="utf-8").replace(here, "").replace(home, f"~{os.sep}")
            target.write_text(text, encoding="utf-8")
    return files
