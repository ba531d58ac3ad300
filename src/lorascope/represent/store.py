"""Save and load representations as safetensors with their ids and metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from lorascope.artifacts import atomic_write
from lorascope.errors import DataError
from lorascope.represent.extract import Representations


def save_representations(reps: Representations, path: Path) -> None:
    """Write atomically: ``<path>.tmp`` then rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**reps.meta, "ids": json.dumps(reps.ids), "poolings": ",".join(reps.states)}
    with atomic_write(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in reps.states.items()}, str(tmp), metadata=meta)


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a stored representation file.

    Raises:
        ConfigError: the file is missing, pickled, truncated or otherwise not safetensors.
    """
    from lorascope.models.folders import open_safetensors

    with open_safetensors(path, "np") as f:
        return dict(f.metadata() or {})


def load_representations(path: Path) -> Representations:
    """Representations stored by ``save_representations``.

    Raises:
        DataError: the file is missing, or is not a lorascope representation file (no ids in its metadata).
        ConfigError: the file is not safetensors (see ``read_metadata``); a pickle is never unpickled.
    """
    if not path.is_file():
        raise DataError(f"{path}: representation file not found")
    from lorascope.models.folders import read_safetensors

    meta = read_metadata(path)  # a pickle or damaged file is refused in one line, never unpickled
    if "ids" not in meta:
        raise DataError(f"{path}: not a lorascope representation file (no ids in its metadata)")
    states = read_safetensors(path, "np")
    ids = json.loads(meta.pop("ids"))
    meta.pop("poolings", None)
    return Representations(states=states, ids=ids, meta=meta)
