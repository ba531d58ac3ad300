"""Intruder dimensions (Shuttleworth et al., *LoRA vs Full Fine-tuning: An Illusion of Equivalence*, NeurIPS 2025).

A singular vector of the fine-tuned matrix W₁ is an *intruder* when it is nearly orthogonal to
every singular vector of the pre-trained W₀: its largest |cosine| with them is below ε. Only the
top-k singular vectors of W₁ (by singular value) are examined (defaults in
:mod:`lorascope.weight_update.defaults`); the paper plots counts over a sweep of ε, which
:func:`count_intruders` gives for any threshold from one similarity vector.
:func:`matched_intruders` counts them with the update rescaled to a common size, since the plain
count grows with ‖ΔW‖ as well as with its direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.weight_update._arrays import as_weight
from lorascope.weight_update.defaults import DEFAULT_EPSILON, DEFAULT_TOP_K


def left_singular_vectors(w: Any) -> np.ndarray:
    """W's left singular vectors, float64 ``[out, min(out, in)]`` (unit columns, by descending singular value).

    A lens that measures many runs against one pre-trained matrix computes W₀'s once and passes them
    as ``u0`` to :func:`intruder_similarity` and :func:`matched_intruders`: the same numbers, two
    SVDs fewer per matrix and run.
    """
    u: np.ndarray = np.linalg.svd(as_weight(w, "w"), full_matrices=False)[0]
    return u


def intruder_similarity(w0: Any, w1: Any, *, top_k: int = DEFAULT_TOP_K, u0: np.ndarray | None = None) -> np.ndarray:
    """For each of W₁'s top-k left singular vectors, its largest |cosine| with any left singular vector of W₀.

    Args:
        w0: pre-trained matrix ``[out, in]``.
        w1: fine-tuned matrix ``[out, in]``.
        top_k: singular vectors of W₁ examined (fewer when the matrix has fewer).
        u0: W₀'s :func:`left_singular_vectors` when already computed ``[out, min(out, in)]``.

    Returns:
        float64 ``[min(top_k, min(out, in))]``, each in [0, 1]; 1 means the direction exists in W₀.
    """
    m0, m1 = as_weight(w0, "w0"), as_weight(w1, "w1")
    if u0 is None:
        u0 = left_singular_vectors(m0)  # W₀'s directions
    elif u0.shape != (m0.shape[0], min(m0.shape)):
        raise LorascopeError(f"u0 {u0.shape}: expected W₀'s left singular vectors, shape {(m0.shape[0], min(m0.shape))}")
    u1 = left_singular_vectors(m1)[:, :top_k]  # [out, k]: W₁'s leading directions
    similarity: np.ndarray = np.abs(u1.T @ u0).max(axis=1)
    return similarity


def count_intruders(similarity: np.ndarray, epsilon: float = DEFAULT_EPSILON) -> int:
    """How many of the examined singular vectors are intruders at threshold ``epsilon``."""
    return int(np.sum(np.asarray(similarity) < epsilon))


def rescaled_update(w0: Any, delta: Any, relative: float) -> np.ndarray:
    """ΔW rescaled to the size ``relative``: ``ΔW · relative · ‖W₀‖_F / ‖ΔW‖_F`` (a zero ΔW stays zero).

    Args:
        w0: pre-trained matrix ``[out, in]``.
        delta: its update ΔW ``[out, in]``.
        relative: the ‖ΔW‖_F / ‖W₀‖_F the result has (≥ 0).

    Returns:
        float64 ``[out, in]``: ΔW's direction (in matrix space) at the given relative size.
    """
    m0, d = as_weight(w0, "w0"), as_weight(delta, "delta")
    if m0.shape != d.shape:
        raise LorascopeError(f"w0 {m0.shape} and delta {d.shape}: the update must have the pre-trained matrix's shape")
    if relative < 0:
        raise LorascopeError(f"relative size {relative}: must be ≥ 0")
    size = float(np.linalg.norm(d))
    if size == 0.0:
        return d
    scaled: np.ndarray = d * (relative * float(np.linalg.norm(m0)) / size)
    return scaled


def matched_intruders(w0: Any, delta: Any, relative: float, *, top_k: int = DEFAULT_TOP_K,
                      epsilon: float = DEFAULT_EPSILON, u0: np.ndarray | None = None) -> int:
    """Intruders of ``W₀ + ΔW̃``, ΔW̃ being ΔW rescaled to ‖ΔW̃‖_F / ‖W₀‖_F = ``relative``.

    The plain count grows with the update's size: a small enough update leaves W₁'s leading
    singular vectors on W₀'s, a large one replaces them with ΔW's own. Counted at one common size
    for every run, what is left is the update's direction: the count is the same for ΔW and c·ΔW,
    any c > 0 (up to rounding). A zero update has no direction and counts 0.

    Args:
        w0: pre-trained matrix ``[out, in]``.
        delta: its update ΔW ``[out, in]``.
        relative: the common relative size ‖ΔW̃‖_F / ‖W₀‖_F.
        top_k, epsilon: as :func:`intruder_similarity` and :func:`count_intruders`.
        u0: W₀'s :func:`left_singular_vectors` when already computed.
    """
    m0 = as_weight(w0, "w0")
    scaled = rescaled_update(m0, delta, relative)
    if not scaled.any():
        return 0
    return count_intruders(intruder_similarity(m0, m0 + scaled, top_k=top_k, u0=u0), epsilon)
