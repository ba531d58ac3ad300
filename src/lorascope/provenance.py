"""Where a result came from: package and library versions, git revision, hardware, seed."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import lorascope

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
