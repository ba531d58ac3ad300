"""Which device a model runs on."""

from __future__ import annotations

import torch

from lorascope.errors import ConfigError


def resolve_device(choice: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda: no CUDA device is available here (use device=cpu or auto)")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)
