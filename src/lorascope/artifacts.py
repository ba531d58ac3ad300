"""Atomic, resumable artifact folders.

A unit of work writes into ``<out>.partial`` and renames it to ``<out>`` when complete
(``os.replace`` is atomic on one file system), so ``<out>`` existing means the unit finished.
Replacing a finished ``<out>`` moves it aside to ``<out>.old`` first and deletes it only once the
new folder is in place; ``recover_finish`` completes a replacement cut off between the two renames.
Every folder stores its resolved config; reusing a folder whose stored config differs from the
current one is an error that names the differing keys, never a silent reuse.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from lorascope.config import diff_configs, dump_yaml
from lorascope.errors import ConfigError

CONFIG_FILE = "config.yaml"


# Suffixes of folders that are not (yet, or no longer) a unit's result: work in progress, a
# replaced result waiting to be deleted, a failure record being written.
NOT_RESULT_SUFFIXES = (".partial", ".old", ".failed")


def partial_path(out: Path) -> Path:
    """Where the unit for ``out`` is written until it is complete."""
    return out.with_name(out.name + ".partial")


def old_path(out: Path) -> Path:
    """Where a finished ``out`` waits, while ``finish`` replaces it, until the new one is in place."""
    return out.with_name(out.name + ".old")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield ``<path>.tmp`` to write; on success rename it onto ``path``, so a reader (or a run
    killed mid-write and resumed) never sees half a file. On an error the temporary file is removed."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def stored_config(folder: Path) -> dict[str, Any] | None:
    p = folder / CONFIG_FILE
    if not p.is_file():
        return None
    return yaml.safe_load(p.read_text(encoding="utf-8")) or {}


def check_same_config(folder: Path, resolved: dict[str, Any]) -> None:
    """Raise ``ConfigError`` naming the keys that differ between ``folder``'s config and ``resolved``."""
    stored = stored_config(folder)
    if stored is None:
        raise ConfigError(f"{folder}: exists but has no {CONFIG_FILE}; remove it or choose another output folder")
    diffs = diff_configs(stored, resolved)
    if diffs:
        raise ConfigError(f"{folder}: was made with a different config ({'; '.join(diffs[:4])}); use another output folder or --overwrite")


def start_partial(out: Path, resolved: dict[str, Any]) -> Path:
    """The ``.partial`` folder to write into; kept (to resume) when its config matches, else fresh."""
    recover_finish(out)  # a partial that was being renamed into place is finished, not reused
    partial = partial_path(out)
    if partial.exists():
        try:
            stored = stored_config(partial)
        except yaml.YAMLError:
            stored = None  # unreadable: start afresh rather than fail on every rerun
        if stored is None or diff_configs(stored, resolved):
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    # Via a temporary file: a kill mid-write must not leave a truncated config that a rerun misreads.
    with atomic_write(partial / CONFIG_FILE) as tmp:
        dump_yaml(resolved, tmp)
    return partial


def finish(partial: Path, out: Path) -> None:
    """Rename the completed ``partial`` into place, replacing a finished ``out`` only then.

    Two renames, not delete-then-rename: at every instant either the old or the new folder is
    complete on disk (as ``out``, or as ``<out>.old`` beside the complete ``partial``).
    """
    old = old_path(out)
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)  # left over from a replacement cut off after its renames
        os.replace(out, old)
    os.replace(partial, out)
    shutil.rmtree(old, ignore_errors=True)


def recover_finish(out: Path) -> None:
    """Complete a ``finish`` that was cut off; does nothing when none was.

    With ``<out>.old`` present and ``out`` missing, the kill came between the two renames, when
    ``partial`` was already complete: it is renamed into place. A leftover ``<out>.old`` beside
    ``out`` is deleted.
    """
    old = old_path(out)
    if not old.exists():
        return
    if not out.exists():
        partial = partial_path(out)
        # Only finish() makes <out>.old, and only while holding a complete partial; without one
        # (someone removed it) the old folder is the only finished result: put it back.
        os.replace(partial if partial.exists() else old, out)
    shutil.rmtree(old, ignore_errors=True)
