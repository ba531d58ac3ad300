"""A local cache for model folders that lorascope builds once (converted or generated).

Location: ``$LORASCOPE_CACHE`` or ``~/.cache/lorascope``. Each entry is written under a temporary
name and renamed into place, so a killed conversion never leaves a half-written model behind,
and two processes racing (``torchrun``) both end up with the same complete folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    """lorascope's cache folder, created if missing: ``$LORASCOPE_CACHE``, else ``~/.cache/lorascope``."""
    root = Path(os.environ.get("LORASCOPE_CACHE", Path.home() / ".cache" / "lorascope"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def materialise(name: str, build: Callable[[Path], None]) -> Path:
    """Return ``cache_root()/name``, calling ``build(tmp_folder)`` first if it is not there yet."""
    target = cache_root() / name
    if (target / ".complete").is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache_root()))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first (target now a non-empty folder): use theirs.
            if not (target / ".complete").is_file():
                shutil.rmtree(target, ignore_errors=True)
                os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
