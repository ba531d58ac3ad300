"""Atomic, resumable artifact folders.

A unit of work writes into ``<out>.partial`` and renames it to ``<out>`` when complete
(``os.replace`` is atomic on one file system), so ``<out>`` existing means the unit finished.
Every folder stores its resolved config; reusing a folder whose stored config differs from the
current one is an error that names the differing keys, never a silent reuse.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from lorascope.config import diff_configs, dump_yaml
from lorascope.errors import ConfigError

CONFIG_FILE = "config.yaml"


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON via a temporary file so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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
    partial = partial_path(out)
    if partial.exists():
        stored = stored_config(partial)
        if stored is None or diff_configs(stored, resolved):
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    dump_yaml(resolved, partial / CONFIG_FILE)
    return partial


def finish(partial: Path, out: Path) -> None:
    """Rename the completed ``partial`` into place."""
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
