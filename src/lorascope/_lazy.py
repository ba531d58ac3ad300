"""Lazy package exports (PEP 562): a package names its public objects without importing them.

``from lorascope.train import TrainConfig`` then imports only the module that defines it, so a
command's ``--help`` or a config check never pays for torch, transformers or scipy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose ``exports`` map a public name to the
    module that defines it (relative, e.g. ``".run"``)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # cached: the next access is a plain attribute lookup
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
