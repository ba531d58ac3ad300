"""Input checks shared by the weight-lens measures: array-likes in, float64 matrices out."""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.similarity._arrays import to_numpy


def as_weight(a: Any, name: str) -> np.ndarray:
    """A 2-D weight matrix ``[out, in]`` as float64; a clear error for anything else."""
    m = np.asarray(to_numpy(a), dtype=np.float64)
    if m.ndim != 2 or 0 in m.shape:
        raise LorascopeError(f"{name}: expected a non-empty 2-D weight matrix [out, in], got shape {m.shape}")
    if not np.isfinite(m).all():
        raise LorascopeError(f"{name}: holds NaN or infinite values")
    return m
