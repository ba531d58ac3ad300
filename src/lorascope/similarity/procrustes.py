"""Orthogonal Procrustes distance between two representations (Ding et al., 2021).

After centring and scaling each side to unit Frobenius norm, the distance is
min over orthogonal Q of ||X − Y Q||_F² = 2 − 2 ||Xᵀ Y||_* (nuclear norm), in [0, 2]. It is
invariant to rotations and isotropic scaling, like CKA, but weighs all directions of the
representation, not mainly the high-variance ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.similarity._arrays import as_matrix, centre_columns, check_pair


def _compact(xc: np.ndarray) -> np.ndarray:
    """A matrix with the same n×n Gram as xc and at most n columns.

    Xᵀ Y has the singular values of Aᵀ B whenever A Aᵀ = X Xᵀ and B Bᵀ = Y Yᵀ, so wide inputs
    (d > n) can be shrunk to n columns before the SVD.

    Args:
        xc: float64 array [n, d].

    Returns:
        float64 array [n, min(n, d)].
    """
    n, d = xc.shape
    if d <= n:
        return xc
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    return np.asarray(u * s)


def procrustes_distance(x: Any, y: Any) -> float:
    """Orthogonal Procrustes distance of the centred, unit-norm representations.

    Args:
        x: float array [n, d1].
        y: float array [n, d2], the same samples; if d1 ≠ d2 the smaller side is implicitly
            zero-padded, as in Ding et al.

    Returns:
        Distance in [0, 2]; 0 means equal up to rotation and scale.

    Raises:
        LorascopeError: not 2-D, different n, NaN/inf, n < 2, or a constant input.
    """
    xm = as_matrix(x, "x")
    ym = as_matrix(y, "y")
    check_pair(xm, ym)
    xc = centre_columns(xm, "x")
    yc = centre_columns(ym, "y")
    xc = xc / np.linalg.norm(xc)
    yc = yc / np.linalg.norm(yc)
    nuclear = float(np.linalg.svd(_compact(xc).T @ _compact(yc), compute_uv=False).sum())
    return float(max(0.0, 2.0 - 2.0 * nuclear))
