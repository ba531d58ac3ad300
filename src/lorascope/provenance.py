"""Where a result came from: package and library versions, git revision, hardware, seed.

:func:`provenance` makes the JSON object every result folder's ``provenance.json`` holds (and drift.json
and bench.json embed); :class:`Provenance` is its type, as the report and the records read it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

import lorascope
from lorascope.config import describe_validation_error
from lorascope.errors import DataError

_LIBRARIES = ("torch", "transformers", "peft", "accelerate", "datasets", "numpy", "scipy", "optuna")


def git_revision(start: Path | None = None) -> str | None:
    """The git commit of the lorascope checkout (``+dirty`` if modified), or None outside git."""
    where = start or Path(lorascope.__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def library_versions() -> dict[str, str | None]:
    """The installed version of each library lorascope records (None where it is not installed)."""
    out: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict[str, Any]:
    """The platform, processor, CPU count and torch threads, and the CUDA device and version where there is one."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
            info["cuda_version"] = torch.version.cuda
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return info


def provenance(seed: int | None = None) -> dict[str, Any]:
    """Everything needed to say how an artifact was produced."""
    return {
        "lorascope_version": lorascope.__version__,
        "git_revision": git_revision(),
        "python": sys.version.split()[0],
        "libraries": library_versions(),
        "hardware": hardware(),
        "seed": seed,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }


class Hardware(BaseModel):
    """``provenance.json``'s ``hardware``: what :func:`hardware` records (the CUDA keys only with a GPU)."""

    # Keys a later or earlier lorascope records are kept as they are: provenance describes, nothing decides on it.
    model_config = ConfigDict(frozen=True, extra="allow")

    platform: str | None = None
    processor: str | None = None
    cpu_count: int | None = None
    torch_threads: int | None = None
    cuda_device: str | None = None
    cuda_version: str | None = None


class Provenance(BaseModel):
    """A result's ``provenance.json`` (the object :func:`provenance` makes). Every key is optional, as
    folders written by older versions lack some; a record that embeds it writes back the keys it read."""

    model_config = ConfigDict(frozen=True, extra="allow")

    lorascope_version: str | None = None
    git_revision: str | None = None
    python: str | None = None
    libraries: dict[str, str | None] = {}
    hardware: Hardware | None = None
    seed: int | None = None
    created_utc: str | None = None
    command: str | None = None


def read_provenance(path: Path) -> Provenance:
    """The provenance saved at ``path``.

    Raises:
        DataError: the file is not a JSON object, or a key holds a value of the wrong type (one line naming it).
    """
    try:  # not artifacts.read_json: artifacts writes provenance, so it imports this module
        return Provenance.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValidationError as err:
        raise DataError(describe_validation_error(err, str(path))) from None
    except (OSError, UnicodeDecodeError, ValueError) as err:  # unreadable, not JSON, or not an object
        raise DataError(f"{path}: not a readable provenance record ({type(err).__name__}: {err})") from None
