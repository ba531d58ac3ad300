"""Input checks shared by the similarity measures: arrays in, float64 matrices out."""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.errors import LorascopeError

# A centred matrix whose norm is below this fraction of the raw norm is constant up to rounding:
# float32 hidden states carry ~1e-7 relative precision, so nothing real lives below 1e-12.
_CONSTANT_RTOL = 1e-12


def to_numpy(a: Any) -> np.ndarray:
    """Any array-like (numpy array, torch tensor on any device/dtype, nested list) as a numpy array.

    torch is not imported here: a tensor is recognised by its ``detach`` method, and bfloat16 or
    half tensors are widened first because numpy cannot hold bfloat16.
    """
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu()
        if hasattr(a, "is_floating_point") and a.is_floating_point() and a.element_size() < 4:
            a = a.float()
        return np.asarray(a.numpy())
    return np.asarray(a)


def as_matrix(a: Any, name: str, *, min_rows: int = 2, dtype: type = np.float64) -> np.ndarray:
    """Check and convert one representation matrix.

    Args:
        a: array-like [n, d], one row per sample.
        name: how to call the argument in error messages.
        min_rows: smallest n the caller can work with.
        dtype: dtype of the returned array (float64 unless the caller only validates).

    Returns:
        float array [n, d] of ``dtype`` (no copy when already that dtype).

    Raises:
        LorascopeError: not 2-D, empty, non-numeric, non-finite, or fewer than ``min_rows`` rows.
    """
    arr = to_numpy(a)
    if arr.ndim != 2:
        raise LorascopeError(f"{name} must be a 2-D array [n_samples, n_features]; got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise LorascopeError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    n, d = arr.shape
    if d == 0:
        raise LorascopeError(f"{name} has no features (shape {arr.shape}); expected at least one column")
    if n < min_rows:
        raise LorascopeError(f"{name} has {n} samples; this measure needs at least {min_rows}")
    # Checked before widening: float32 input is half the bytes to scan.
    if not np.isfinite(arr).all():
        raise LorascopeError(f"{name} contains NaN or inf; representations must be finite")
    return arr.astype(dtype, copy=False)


def as_layer_stack(a: Any, name: str, *, min_rows: int = 2) -> np.ndarray:
    """Check a stack of per-layer matrices without converting it (layers are widened one at a time).

    Args:
        a: array-like [L, n, d].
        name: how to call the argument in error messages.
        min_rows: smallest n the caller can work with.

    Returns:
        array [L, n, d] in its own floating dtype; finiteness is checked per layer by ``as_matrix``.
    """
    arr = to_numpy(a)
    if arr.ndim != 3:
        raise LorascopeError(
            f"{name} must be a 3-D array [n_layers, n_samples, n_features]; got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise LorascopeError(f"{name} has no layers (shape {arr.shape})")
    if arr.shape[1] < min_rows:
        raise LorascopeError(
            f"{name} has {arr.shape[1]} samples per layer; this measure needs at least {min_rows}"
        )
    return arr


def check_pair(x: np.ndarray, y: np.ndarray, *, same_features: bool = False) -> None:
    """Raise unless x and y describe the same samples (and, if asked, the same feature space).

    Args:
        x: float array [n, d1] or [L, n, d1].
        y: float array [n, d2] or [L, n, d2].
        same_features: also require d1 == d2.
    """
    if x.shape[:-1] != y.shape[:-1]:
        raise LorascopeError(
            f"x and y must cover the same samples (and layers): shapes {x.shape} and {y.shape} differ "
            "before the feature axis"
        )
    if same_features and x.shape[-1] != y.shape[-1]:
        raise LorascopeError(
            f"x and y must have the same number of features for this measure; got {x.shape[-1]} and {y.shape[-1]}"
        )


def sum_of_products(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a_ij b_ij for two arrays of the same shape [n, m].

    einsum's single-threaded loop, not BLAS ``vdot``: a memory-bound reduction gains nothing
    from threads, and multi-threaded OpenBLAS level-1 calls slow down ~50x when other processes
    compete for the cores.
    """
    return float(np.einsum("ij,ij->", a, b))


def centre_columns(x: np.ndarray, name: str) -> np.ndarray:
    """Subtract the column means, refusing data that is constant across samples.

    Centring in float64 before any product keeps large shared offsets (hidden states have a big
    common mean) from swamping the sample-to-sample variation.

    Args:
        x: float64 array [n, d].
        name: how to call the argument in error messages.

    Returns:
        float64 array [n, d] with zero column means.

    Raises:
        LorascopeError: every row is the same, so any similarity index is undefined.
    """
    xc = x - x.mean(axis=0, keepdims=True)
    if sum_of_products(xc, xc) <= (_CONSTANT_RTOL**2) * sum_of_products(x, x):
        raise LorascopeError(
            f"{name} has zero variance across samples (all rows identical); the similarity is undefined"
        )
    return np.asarray(xc)
