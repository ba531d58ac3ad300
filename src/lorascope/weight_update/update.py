"""Size and rank of a weight update ΔW = W₁ − W₀, and the merged update of a LoRA adapter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.weight_update._arrays import as_weight
from lorascope.weight_update.defaults import DEFAULT_EPSILON, DEFAULT_TOP_K
from lorascope.weight_update.intruders import count_intruders, intruder_similarity


def lora_delta(a: Any, b: Any, alpha: float, rank: int, *, rslora: bool = False) -> np.ndarray:
    """The dense update a LoRA adapter adds to its base matrix, as PEFT merges it.

    Args:
        a: ``lora_A`` weight ``[r, in]``.
        b: ``lora_B`` weight ``[out, r]``.
        alpha: ``lora_alpha``.
        rank: ``r``.
        rslora: rank-stabilised scaling ``alpha / sqrt(r)`` instead of ``alpha / r``.

    Returns:
        ΔW ``[out, in]`` = scale · B · A (float64).
    """
    a_m, b_m = as_weight(a, "lora_A"), as_weight(b, "lora_B")
    if a_m.shape[0] != b_m.shape[1]:
        raise LorascopeError(f"lora_A {a_m.shape} and lora_B {b_m.shape} do not share a rank")
    scale = alpha / math.sqrt(rank) if rslora else alpha / rank
    delta: np.ndarray = scale * (b_m @ a_m)
    return delta


def dora_delta(w0: Any, a: Any, b: Any, magnitude: Any, alpha: float, rank: int, *, rslora: bool = False) -> np.ndarray:
    """The dense update a DoRA adapter makes to its base matrix, as PEFT merges it.

    DoRA rescales every row of the LoRA-updated matrix to a learned norm:
    ``W₁ = (m / ‖W₀ + ΔW_lora‖_row) · (W₀ + ΔW_lora)``, the norm taken per output row.

    Args:
        w0: the base matrix ``[out, in]``.
        a, b, alpha, rank, rslora: as :func:`lora_delta`.
        magnitude: ``lora_magnitude_vector`` ``[out]``.

    Returns:
        ΔW ``[out, in]`` = W₁ − W₀ (float64).
    """
    m0 = as_weight(w0, "w0")
    combined = m0 + lora_delta(a, b, alpha, rank, rslora=rslora)
    mag = np.asarray(magnitude, dtype=np.float64).reshape(-1)
    if mag.shape[0] != combined.shape[0]:
        raise LorascopeError(f"magnitude has {mag.shape[0]} entries for a matrix with {combined.shape[0]} rows")
    delta: np.ndarray = (mag / np.linalg.norm(combined, axis=1))[:, None] * combined - m0
    return delta


def relative_update(w0: Any, w1: Any) -> float:
    """‖W₁ − W₀‖_F / ‖W₀‖_F: 0 for an unchanged matrix."""
    m0, m1 = as_weight(w0, "w0"), as_weight(w1, "w1")
    _same_shape(m0, m1)
    norm0 = float(np.linalg.norm(m0))
    if norm0 == 0.0:
        raise LorascopeError("w0: the pre-trained matrix is all zeros; a relative update is undefined")
    return float(np.linalg.norm(m1 - m0)) / norm0


def singular_values(delta: Any) -> np.ndarray:
    """Singular values of a matrix, descending, float64 ``[min(out, in)]``."""
    return np.linalg.svd(as_weight(delta, "delta"), compute_uv=False)


def stable_rank(delta: Any) -> float:
    """‖ΔW‖_F² / ‖ΔW‖_2² (between 1 and the rank; 0 for a zero update): how many directions carry the update."""
    return stable_rank_of(singular_values(delta))


def stable_rank_of(s: np.ndarray) -> float:
    """:func:`stable_rank` from the singular values ``s`` (descending, float64 ``[k]``)."""
    return 0.0 if s[0] == 0.0 else float(np.sum(s**2) / s[0] ** 2)


def entropy_rank(delta: Any) -> float:
    """Effective rank exp(H(p)), p = σ / Σσ (Roy & Vetterli, 2007); 0 for a zero update.

    Exactly r for a rank-r matrix with equal singular values; below r when a few directions dominate.
    """
    return entropy_rank_of(singular_values(delta))


def entropy_rank_of(s: np.ndarray) -> float:
    """:func:`entropy_rank` from the singular values ``s`` (float64 ``[k]``)."""
    total = float(s.sum())
    if total == 0.0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


@dataclass(frozen=True)
class MatrixUpdate:
    """The weight lens on one matrix.

    Attributes:
        relative_update: ‖ΔW‖_F / ‖W₀‖_F.
        stable_rank, entropy_rank: effective ranks of ΔW.
        top_singular_values: the largest singular values of ΔW (up to ``top_k``).
        intruder_similarity: ``[top_k]`` for each top singular vector of W₁, its largest |cosine|
            with any singular vector of W₀ (see :func:`intruder_similarity`).
        intruders: how many of those are below ``epsilon``.
    """

    relative_update: float
    stable_rank: float
    entropy_rank: float
    top_singular_values: list[float]
    intruder_similarity: list[float]
    intruders: int
    epsilon: float


def matrix_update(w0: Any, w1: Any, *, top_k: int = DEFAULT_TOP_K, epsilon: float = DEFAULT_EPSILON,
                  u0: np.ndarray | None = None) -> MatrixUpdate:
    """Every weight-lens measure of one matrix (W₀ and W₁ ``[out, in]``; ``u0``: W₀'s left singular
    vectors when already computed, see :func:`~lorascope.weight_update.intruders.left_singular_vectors`)."""
    m0, m1 = as_weight(w0, "w0"), as_weight(w1, "w1")
    _same_shape(m0, m1)
    delta = m1 - m0
    sims = intruder_similarity(m0, m1, top_k=top_k, u0=u0)
    s = singular_values(delta)  # once for the three measures that read it
    return MatrixUpdate(
        relative_update=relative_update(m0, m1),
        stable_rank=stable_rank_of(s),
        entropy_rank=entropy_rank_of(s),
        top_singular_values=[float(v) for v in s[:top_k]],
        intruder_similarity=[float(v) for v in sims],
        intruders=count_intruders(sims, epsilon),
        epsilon=epsilon,
    )


def _same_shape(m0: np.ndarray, m1: np.ndarray) -> None:
    if m0.shape != m1.shape:
        raise LorascopeError(f"w0 {m0.shape} and w1 {m1.shape}: the fine-tuned matrix must have the pre-trained one's shape")
