"""Bootstrap over samples for linear CKA, at O(n²) per resample.

Resampling rows of X and Y together (the same indices for both) and recomputing CKA needs no new
matrix products: if K = X Xᵀ and L = Y Yᵀ, the resampled Grams are K[idx][:, idx] and L[idx][:, idx],
and every quantity CKA needs is a quadratic form in the resampling counts w (w_i = how many times
sample i was drawn, Σ w = n). With P = diag(w) − w wᵀ / n, the centred resampled HSIC is

    tr(K P L P) = wᵀ(K∘L)w − (2/n) Σ_i w_i (Kw)_i (Lw)_i + (wᵀKw)(wᵀLw) / n²,

which equals the biased estimator on the explicitly resampled matrices exactly (duplicated rows
count as separate samples in the centring and in the sums). So a batch of B resamples costs five
[B, n] × [n, n] products: C K, C L, C (K∘L), C (K∘K), C (L∘L), with C the [B, n] count matrix.

Two copies of one sample in a resample are not independent draws, and the estimators treat them
differently. The biased estimator counts them as separate samples (as above), so a resample
carries about twice the diagonal mass of the original (Σ w_i² ≈ 2n) and its replicates sit above
the estimate by roughly the estimator's own bias. For the debiased estimator ``ties`` decides:

* "exclude" (default): the unbiased HSIC formula of Song et al. on the resampled Grams with every
  entry that pairs two copies of the same sample set to zero, as the diagonal already is. Pairs
  of distinct samples are all that a U-statistic averages over, so replicates centre on the
  debiased estimate. Zeroing entries is not invariant to shifting the data, so this is defined on
  the Grams of the data centred on the full sample, which is what the helpers here pass.
* "keep": the debiased formula applied to ``x[idx], y[idx]`` as they are, copies treated as
  distinct samples. Its replicates estimate the plug-in (biased) quantity instead, because the
  resampling distribution has atoms.

How far apart these are, for Y a noisy linear map of X (n = 750, d = 2048): biased CKA 0.790 with
replicates centred 0.082 above it; debiased 0.402 with "keep" replicates 0.388 above and
"exclude" replicates within 0.0001. Replicate spreads were 0.0027 (biased), 0.0069 ("keep") and
0.0031 ("exclude"), against a sampling sd over fresh data of 0.0011 (biased) and 0.0020
(debiased): spreads are conservative. So: resample the debiased estimator with ties excluded,
and centre intervals on the estimate rather than reading percentiles of biased replicates.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.similarity._arrays import as_layer_stack, as_matrix, centre_columns, check_pair
from lorascope.similarity.cka import centred_gram

# Rows of the count matrix processed per batch: bounds the five [chunk, n] float64 products to
# ~5 · 8 · 2²² bytes ≈ 170 MB whatever n and n_resamples are.
_CHUNK_ELEMENTS = 2**22

Ties = Literal["exclude", "keep"]


def bootstrap_indices(n: int, n_resamples: int, seed: int | np.random.Generator | None) -> np.ndarray:
    """Row indices of the bootstrap resamples, as drawn by the helpers in this module.

    Args:
        n: number of samples.
        n_resamples: number of resamples B.
        seed: integer seed (or Generator) for ``numpy.random.default_rng``.

    Returns:
        int64 array [B, n]; row b lists the samples (with repetition) of resample b.
    """
    if n < 2:
        raise LorascopeError(f"bootstrap needs at least 2 samples; got {n}")
    if n_resamples < 1:
        raise LorascopeError(f"n_resamples must be at least 1; got {n_resamples}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_resamples, n), dtype=np.int64)


def resample_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """How many times each sample appears in each resample.

    Args:
        indices: int array [B, m], sample indices in [0, n).
        n: number of samples.

    Returns:
        float64 array [B, n], counts (row sums equal m).
    """
    b = indices.shape[0]
    flat = (indices + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def weighted_cka(
    k: np.ndarray, l: np.ndarray, counts: np.ndarray, *, ties: Ties = "exclude"
) -> tuple[np.ndarray, np.ndarray]:
    """Biased and debiased linear CKA of resampled data, from the full-sample Grams.

    Args:
        k: float64 array [n, n], Gram matrix of X (centring is optional, but centred data keeps
            the sums small and the arithmetic accurate).
        l: float64 array [n, n], Gram matrix of Y.
        counts: float64 array [B, n], resampling counts; each row sums to n.
        ties: for the debiased estimator, "exclude" pairs of copies of one sample or "keep" them
            (see the module docstring). The biased estimator is the same either way.

    Returns:
        (biased, debiased): float64 arrays [B]. A resample whose CKA is undefined (e.g. every drawn
        row the same) gives NaN; debiased is NaN for all resamples when n < 4.
    """
    if ties not in ("exclude", "keep"):
        raise LorascopeError(f"ties must be 'exclude' or 'keep'; got {ties!r}")
    n = k.shape[0]
    b_total = counts.shape[0]
    biased = np.empty(b_total)
    debiased = np.empty(b_total)
    kl, kk, ll = k * l, k * k, l * l
    dk, dl = np.diagonal(k).copy(), np.diagonal(l).copy()
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, b_total, chunk):
        c = counts[start : start + chunk]
        kw, lw = c @ k, c @ l  # rows: (K w)ᵀ, (L w)ᵀ
        q_kl = np.einsum("bi,bi->b", c @ kl, c)  # wᵀ (K∘L) w
        q_kk = np.einsum("bi,bi->b", c @ kk, c)
        q_ll = np.einsum("bi,bi->b", c @ ll, c)
        a_k = np.einsum("bi,bi->b", kw, c)  # wᵀ K w
        a_l = np.einsum("bi,bi->b", lw, c)
        ckw, clw = c * kw, c * lw
        h_kl = q_kl - (2.0 / n) * np.einsum("bi,bi->b", ckw, lw) + a_k * a_l / n**2
        h_kk = q_kk - (2.0 / n) * np.einsum("bi,bi->b", ckw, kw) + a_k * a_k / n**2
        h_ll = q_ll - (2.0 / n) * np.einsum("bi,bi->b", clw, lw) + a_l * a_l / n**2
        with np.errstate(divide="ignore", invalid="ignore"):
            biased[start : start + chunk] = np.where(
                (h_kk > 0) & (h_ll > 0), h_kl / np.sqrt(np.abs(h_kk * h_ll)), np.nan
            )
        if n < 4:
            debiased[start : start + chunk] = np.nan
            continue
        # Song et al.'s unbiased HSIC on the resampled Grams K̂, L̂ with zeroed diagonals,
        # tr(K̂L̂) + (1ᵀK̂1)(1ᵀL̂1)/((n-1)(n-2)) − 2/(n-2) · 1ᵀK̂L̂1,
        # with each term written as a sum over resampled rows. Sample i fills a w_i × w_i block of
        # the resampled Gram with K_ii: "keep" zeroes only its w_i diagonal entries, "exclude"
        # the whole block.
        e = c * c if ties == "exclude" else c  # zeroed entries per sample
        t_kl = q_kl - np.einsum("bi,i->b", e, dk * dl)
        t_kk = q_kk - np.einsum("bi,i->b", e, dk * dk)
        t_ll = q_ll - np.einsum("bi,i->b", e, dl * dl)
        s_k = a_k - np.einsum("bi,i->b", e, dk)
        s_l = a_l - np.einsum("bi,i->b", e, dl)
        # Row sums of K̂ for a copy of sample i: (Kw)_i less the zeroed entries of its block row.
        if ties == "exclude":
            kr, lr = kw - c * dk, lw - c * dl
        else:
            kr, lr = kw - dk, lw - dl
        ckr = c * kr
        r_kl = np.einsum("bi,bi->b", ckr, lr)
        r_kk = np.einsum("bi,bi->b", ckr, kr)
        r_ll = np.einsum("bi,bi->b", c * lr, lr)
        f1, f2 = 1.0 / ((n - 1.0) * (n - 2.0)), 2.0 / (n - 2.0)
        u_kl = t_kl + s_k * s_l * f1 - f2 * r_kl
        u_kk = t_kk + s_k * s_k * f1 - f2 * r_kk
        u_ll = t_ll + s_l * s_l * f1 - f2 * r_ll
        with np.errstate(divide="ignore", invalid="ignore"):
            debiased[start : start + chunk] = np.where(
                (u_kk > 0) & (u_ll > 0), u_kl / np.sqrt(np.abs(u_kk * u_ll)), np.nan
            )
    return biased, debiased


def bootstrap_linear_cka(
    x: Any,
    y: Any,
    n_resamples: int = 1000,
    seed: int = 0,
    *,
    debiased: bool = False,
    ties: Ties = "exclude",
) -> np.ndarray:
    """Bootstrap distribution of linear CKA over samples.

    Rows of x and y are resampled together with :func:`bootstrap_indices` ``(n, n_resamples, seed)``.
    Biased (and debiased with ``ties="keep"``): resample b equals
    ``linear_cka(x[idx[b]], y[idx[b]], debiased=debiased)``.

    Args:
        x: float array [n, d1].
        y: float array [n, d2], the same samples.
        n_resamples: number of resamples B.
        seed: seed of the index draws; the same seed gives the same resamples for any x, y of
            that n, so bootstrap distributions of different model pairs stay paired.
        debiased: bootstrap the debiased estimator.
        ties: debiased only: "exclude" (default) leaves pairs of copies of one sample out of the
            U-statistic, "keep" treats copies as distinct samples; see the module docstring for
            why "keep" replicates centre far from the estimate when d ≳ n.

    Returns:
        float64 array [B]; NaN for a resample where CKA is undefined.
    """
    min_rows = 4 if debiased else 2
    xm = as_matrix(x, "x", min_rows=min_rows)
    ym = as_matrix(y, "y", min_rows=min_rows)
    check_pair(xm, ym)
    n = xm.shape[0]
    counts = resample_counts(bootstrap_indices(n, n_resamples, seed), n)
    k = centred_gram(centre_columns(xm, "x"))
    l = centred_gram(centre_columns(ym, "y"))
    biased, unbiased = weighted_cka(k, l, counts, ties=ties)
    return unbiased if debiased else biased


def bootstrap_linear_cka_layers(
    x_layers: Any,
    y_layers: Any,
    n_resamples: int = 1000,
    seed: int = 0,
    *,
    debiased: bool = False,
    ties: Ties = "exclude",
) -> np.ndarray:
    """Bootstrap distribution of linear CKA for every layer, with the same resamples for all layers.

    Args:
        x_layers: float array [L, n, d1].
        y_layers: float array [L, n, d2].
        n_resamples: number of resamples B.
        seed: seed of the index draws (shared by all layers).
        debiased: bootstrap the debiased estimator.
        ties: as in :func:`bootstrap_linear_cka`.

    Returns:
        float64 array [L, B].
    """
    min_rows = 4 if debiased else 2
    xs = as_layer_stack(x_layers, "x_layers", min_rows=min_rows)
    ys = as_layer_stack(y_layers, "y_layers", min_rows=min_rows)
    check_pair(xs, ys)
    n = xs.shape[1]
    counts = resample_counts(bootstrap_indices(n, n_resamples, seed), n)
    out = np.empty((xs.shape[0], n_resamples))
    for i in range(xs.shape[0]):
        k = centred_gram(centre_columns(as_matrix(xs[i], f"x_layers[{i}]"), f"x_layers[{i}]"))
        l = centred_gram(centre_columns(as_matrix(ys[i], f"y_layers[{i}]"), f"y_layers[{i}]"))
        biased, unbiased = weighted_cka(k, l, counts, ties=ties)
        out[i] = unbiased if debiased else biased
    return out
