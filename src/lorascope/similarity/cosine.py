"""Mean per-sample cosine similarity between two representations in the same feature space.

Unlike CKA this compares each sample's vectors directly, so it needs the same features (d) on
both sides and is not invariant to rotations of one side: it answers "did this sample's vector
move?" where CKA answers "did the geometry across samples change?".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.similarity._arrays import as_layer_stack, as_matrix, check_pair


def row_cosines(x: np.ndarray, y: np.ndarray, name: str) -> np.ndarray:
    """Cosine of each row pair.

    Args:
        x: float64 array [n, d].
        y: float64 array [n, d].
        name: prefix for error messages.

    Returns:
        float64 array [n].
    """
    nx = np.einsum("ij,ij->i", x, x)
    ny = np.einsum("ij,ij->i", y, y)
    for norms, side in ((nx, "x"), (ny, "y")):
        zero = np.flatnonzero(norms == 0.0)
        if zero.size:
            raise LorascopeError(
                f"{name}{side} has {zero.size} all-zero row(s) (first: row {zero[0]}); "
                "cosine similarity needs non-zero vectors"
            )
    return np.asarray(np.einsum("ij,ij->i", x, y) / np.sqrt(nx * ny))


def mean_cosine(x: Any, y: Any) -> float:
    """Mean over samples of cos(x_i, y_i).

    Args:
        x: float array [n, d] (numpy array or torch tensor).
        y: float array [n, d], the same samples and the same feature space.

    Returns:
        Mean cosine similarity in [-1, 1].

    Raises:
        LorascopeError: shapes differ, NaN/inf, n < 1, or a row is all zeros.
    """
    xm = as_matrix(x, "x", min_rows=1)
    ym = as_matrix(y, "y", min_rows=1)
    check_pair(xm, ym, same_features=True)
    return float(row_cosines(xm, ym, "").mean())


def mean_cosine_layers(x_layers: Any, y_layers: Any) -> np.ndarray:
    """Mean per-sample cosine similarity for every layer.

    Args:
        x_layers: float array [L, n, d].
        y_layers: float array [L, n, d].

    Returns:
        float64 array [L].
    """
    xs = as_layer_stack(x_layers, "x_layers", min_rows=1)
    ys = as_layer_stack(y_layers, "y_layers", min_rows=1)
    check_pair(xs, ys, same_features=True)
    out = np.empty(xs.shape[0])
    for i in range(xs.shape[0]):
        xm = as_matrix(xs[i], f"x_layers[{i}]", min_rows=1)
        ym = as_matrix(ys[i], f"y_layers[{i}]", min_rows=1)
        out[i] = row_cosines(xm, ym, f"layer {i}: ").mean()
    return out
