"""Mutual k-nearest-neighbour alignment of two representations (Huh et al., *The Platonic
Representation Hypothesis*, ICML 2024).

Two representations of the same samples agree locally when each sample has the same nearest
neighbours in both. Unlike CKA, which is dominated by the few directions of largest variance, the
measure only looks at neighbourhoods, so it answers "did fine-tuning rearrange which inputs look
alike?" rather than "did the main axes of variation move?".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.similarity._arrays import as_matrix, check_pair


def _neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """int array [n, k]: each row's k most cosine-similar other rows (itself excluded)."""
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    # argpartition: the k largest in any order; a set is all the overlap needs.
    return np.argpartition(-sims, k - 1, axis=1)[:, :k]


def mutual_knn(x: Any, y: Any, *, k: int = 10) -> float:
    """Mean over samples of |N_x(i) ∩ N_y(i)| / k, neighbours by cosine similarity.

    Args:
        x: float array [n, d1].
        y: float array [n, d2], the same samples in the same order.
        k: neighbours per sample (1 ≤ k < n).

    Returns:
        Alignment in [0, 1]; 1 when every sample keeps all its neighbours.

    Raises:
        LorascopeError: not 2-D, different n, NaN/inf, or k outside [1, n).
    """
    xm = as_matrix(x, "x")
    ym = as_matrix(y, "y")
    check_pair(xm, ym)
    n = xm.shape[0]
    if not 1 <= k < n:
        raise LorascopeError(f"mutual k-NN needs 1 <= k < n; got k={k}, n={n}")
    nx, ny = _neighbours(xm, k), _neighbours(ym, k)
    overlap = [np.intersect1d(a, b, assume_unique=True).size for a, b in zip(nx, ny)]
    return float(np.mean(overlap) / k)
