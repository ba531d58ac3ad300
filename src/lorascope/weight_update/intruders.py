"""Intruder dimensions (Shuttleworth et al., *LoRA vs Full Fine-tuning: An Illusion of Equivalence*, NeurIPS 2025).

A singular vector of the fine-tuned matrix W₁ is an *intruder* when it is nearly orthogonal to
every singular vector of the pre-trained W₀: its largest |cosine| with them is below ε. Only the
top-k singular vectors of W₁ (by singular value) are examined (defaults in
:mod:`lorascope.weight_update.defaults`); the paper plots counts over a sweep of ε, which
:func:`count_intruders` gives for any threshold from one similarity vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.weight_update._arrays import as_weight
from lorascope.weight_update.defaults import DEFAULT_EPSILON, DEFAULT_TOP_K


def intruder_similarity(w0: Any, w1: Any, *, top_k: int = DEFAULT_TOP_K) -> np.ndarray:
    """For each of W₁'s top-k left singular vectors, its largest |cosine| with any left singular vector of W₀.

    Args:
        w0: pre-trained matrix ``[out, in]``.
        w1: fine-tuned matrix ``[out, in]``.
        top_k: singular vectors of W₁ examined (fewer when the matrix has fewer).

    Returns:
        float64 ``[min(top_k, min(out, in))]``, each in [0, 1]; 1 means the direction exists in W₀.
    """
    m0, m1 = as_weight(w0, "w0"), as_weight(w1, "w1")
    u0 = np.linalg.svd(m0, full_matrices=False)[0]  # [out, min(out, in)]: W₀'s directions, unit columns
    u1 = np.linalg.svd(m1, full_matrices=False)[0][:, :top_k]  # [out, k]: W₁'s leading directions
    similarity: np.ndarray = np.abs(u1.T @ u0).max(axis=1)
    return similarity


def count_intruders(similarity: np.ndarray, epsilon: float = DEFAULT_EPSILON) -> int:
    """How many of the examined singular vectors are intruders at threshold ``epsilon``."""
    return int(np.sum(np.asarray(similarity) < epsilon))
