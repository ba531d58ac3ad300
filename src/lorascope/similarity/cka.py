"""Linear centred kernel alignment (CKA), biased and debiased, for one pair or all layers.

Linear CKA (Kornblith et al., 2019) between representations X [n, d1] and Y [n, d2] of the same n
samples, with columns centred:

    CKA = ||Yᵀ X||_F² / (||Xᵀ X||_F · ||Yᵀ Y||_F)

It is invariant to orthogonal transforms and isotropic scaling of either input, not to general
invertible linear maps. The debiased variant replaces each HSIC by the unbiased estimator of
Song et al. (2012), in the closed form of Kornblith's reference notebook
(google-research/representation_similarity, ``_debiased_dot_product_similarity_helper``): with
centred data, K = X Xᵀ, L = Y Yᵀ and r_x = diag(K),

    HSIC_u(K, L) ∝ <K, L>_F − n/(n−2) · r_xᵀ r_y + tr(K) tr(L) / ((n−1)(n−2)).

Both estimators need only <K, L>_F, ||K||_F², ||L||_F² and the row norms, which can be had from
n×n Gram matrices (cost ~ n² d) or d×d feature products (cost ~ n d²): the cheaper one is used.
All sums are float64; only the Gram products may optionally run in float32 (see centred_gram).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.similarity._arrays import as_layer_stack, as_matrix, centre_columns, check_pair, sum_of_products

CkaPath = Literal["auto", "gram", "feature"]


@dataclass(frozen=True)
class CkaMoments:
    """The sufficient statistics of linear CKA for one pair of centred matrices.

    Attributes:
        kl: <K, L>_F = ||Xᵀ Y||_F².
        kk: ||K||_F² = ||Xᵀ X||_F².
        ll: ||L||_F² = ||Yᵀ Y||_F².
        rx: float array [n], squared row norms of centred X (the diagonal of K).
        ry: float array [n], squared row norms of centred Y.
    """

    kl: float
    kk: float
    ll: float
    rx: np.ndarray
    ry: np.ndarray

    @property
    def n(self) -> int:
        return int(self.rx.shape[0])


def choose_path(n: int, d1: int, d2: int) -> Literal["gram", "feature"]:
    """The cheaper way to get the CKA moments for X [n, d1], Y [n, d2].

    Gram path: two symmetric n×n products, ~ n² (d1 + d2) multiply-adds. Feature path: Xᵀ Y plus
    two symmetric d×d products, ~ n (d1 + d2)². So the Gram path wins when n ≤ d1 + d2 (the usual
    case for hidden states: 750 samples, 2048 features); memory follows the same order.
    """
    return "gram" if n <= d1 + d2 else "feature"


GramPrecision = Literal["float64", "float32"]


def centred_gram(xc: np.ndarray, precision: GramPrecision = "float64") -> np.ndarray:
    """Linear Gram matrix of already-centred data.

    Args:
        xc: float64 array [n, d] with zero column means.
        precision: "float64", or "float32" for the product only (about twice as fast). In the
            float32 variant the diagonal is replaced by float64 row norms: the debiased estimator
            subtracts diagonal terms that dominate ⟨K, L⟩ when d ≫ n, so their rounding would
            not cancel, while off-diagonal rounding averages out. CKA then differs from the
            float64 result by ~1e-9 (checked by the tests to stay below 1e-6).

    Returns:
        float64 array [n, n], xc xcᵀ (numpy uses a symmetric rank-k update for ``a @ a.T``).
    """
    if precision == "float64":
        return np.asarray(xc @ xc.T)
    if precision != "float32":
        raise LorascopeError(f"precision must be 'float64' or 'float32'; got {precision!r}")
    x32 = xc.astype(np.float32)
    gram = (x32 @ x32.T).astype(np.float64)
    np.fill_diagonal(gram, np.einsum("ij,ij->i", xc, xc))
    return gram


def moments_from_grams(k: np.ndarray, l: np.ndarray) -> CkaMoments:
    """CKA moments from the Gram matrices of centred data.

    Args:
        k: float64 array [n, n], Xc Xcᵀ.
        l: float64 array [n, n], Yc Ycᵀ.
    """
    return CkaMoments(
        kl=sum_of_products(k, l),
        kk=sum_of_products(k, k),
        ll=sum_of_products(l, l),
        rx=np.diagonal(k).copy(),
        ry=np.diagonal(l).copy(),
    )


def moments_from_features(xc: np.ndarray, yc: np.ndarray) -> CkaMoments:
    """CKA moments from d×d feature products of centred data.

    Args:
        xc: float64 array [n, d1] with zero column means.
        yc: float64 array [n, d2] with zero column means.
    """
    xty = xc.T @ yc
    xtx = xc.T @ xc
    yty = yc.T @ yc
    return CkaMoments(
        kl=sum_of_products(xty, xty),
        kk=sum_of_products(xtx, xtx),
        ll=sum_of_products(yty, yty),
        rx=np.einsum("ij,ij->i", xc, xc),
        ry=np.einsum("ij,ij->i", yc, yc),
    )


def debiased_hsic(kl: float, rx: np.ndarray, ry: np.ndarray, n: int) -> float:
    """Unbiased linear HSIC (Song et al., 2012), scaled by n(n−3), from centred-data moments.

    Args:
        kl: <K, L>_F for centred data.
        rx: float array [n], diag(K).
        ry: float array [n], diag(L).
        n: number of samples (≥ 4).
    """
    cross = float(np.einsum("i,i->", rx, ry))
    return kl - n / (n - 2.0) * cross + float(rx.sum()) * float(ry.sum()) / ((n - 1.0) * (n - 2.0))


def cka_from_moments(m: CkaMoments, *, debiased: bool = False) -> float:
    """Linear CKA from its moments.

    Args:
        m: moments of centred X [n, d1] and Y [n, d2].
        debiased: use the unbiased HSIC estimator (needs n ≥ 4).

    Raises:
        LorascopeError: a self-similarity term is not positive, so CKA is undefined.
    """
    if not debiased:
        if m.kk <= 0.0 or m.ll <= 0.0:
            raise LorascopeError("CKA is undefined: one input has zero variance across samples")
        return float(m.kl / np.sqrt(m.kk * m.ll))
    n = m.n
    if n < 4:
        raise LorascopeError(f"debiased CKA needs at least 4 samples (the estimator divides by n-3); got {n}")
    hxy = debiased_hsic(m.kl, m.rx, m.ry, n)
    hxx = debiased_hsic(m.kk, m.rx, m.rx, n)
    hyy = debiased_hsic(m.ll, m.ry, m.ry, n)
    if hxx <= 0.0 or hyy <= 0.0:
        # The unbiased self-HSIC is a squared norm of the U-centred Gram; it is zero only for
        # degenerate data (e.g. every sample but one identical).
        raise LorascopeError(
            "debiased CKA is undefined: the unbiased self-similarity of an input is not positive "
            "(degenerate data: too few distinct samples)"
        )
    return float(hxy / np.sqrt(hxx * hyy))


def cka_moments(xc: np.ndarray, yc: np.ndarray, path: CkaPath = "auto") -> CkaMoments:
    """CKA moments of centred data by the requested path.

    Args:
        xc: float64 array [n, d1] with zero column means.
        yc: float64 array [n, d2] with zero column means.
        path: "gram", "feature" or "auto" (the cheaper by :func:`choose_path`).
    """
    if path not in ("auto", "gram", "feature"):
        raise LorascopeError(f"path must be 'auto', 'gram' or 'feature'; got {path!r}")
    if path == "auto":
        path = choose_path(xc.shape[0], xc.shape[1], yc.shape[1])
    if path == "gram":
        return moments_from_grams(centred_gram(xc), centred_gram(yc))
    return moments_from_features(xc, yc)


def linear_cka(x: Any, y: Any, *, debiased: bool = False, path: CkaPath = "auto") -> float:
    """Linear CKA between two representations of the same samples.

    Args:
        x: float array [n, d1] (numpy array or torch tensor), one row per sample.
        y: float array [n, d2], the same samples in the same order.
        debiased: use the unbiased HSIC estimator; it is ~0 for independent data even when d ≫ n,
            where the biased one is pulled towards 1. Can be slightly negative.
        path: "gram" (n×n Grams), "feature" (d×d products) or "auto" (the cheaper one). The two
            agree to rounding error.

    Returns:
        CKA similarity in [0, 1] (debiased: may be slightly below 0).

    Raises:
        LorascopeError: not 2-D, different n, NaN/inf, n < 2 (n < 4 if debiased), or an input with
            zero variance across samples.
    """
    min_rows = 4 if debiased else 2
    xm = as_matrix(x, "x", min_rows=min_rows)
    ym = as_matrix(y, "y", min_rows=min_rows)
    check_pair(xm, ym)
    xc = centre_columns(xm, "x")
    yc = centre_columns(ym, "y")
    return float(cka_from_moments(cka_moments(xc, yc, path), debiased=debiased))


def linear_cka_layers(
    x_layers: Any, y_layers: Any, *, debiased: bool = False, path: CkaPath = "auto"
) -> np.ndarray:
    """Linear CKA for every layer of two models on the same samples.

    Layers are widened to float64 one at a time, so peak memory is the inputs plus one layer.

    Args:
        x_layers: float array [L, n, d1], e.g. base-model mean-pooled hidden states per layer.
        y_layers: float array [L, n, d2], the fine-tuned model on the same samples.
        debiased: use the unbiased HSIC estimator (needs n ≥ 4).
        path: as in :func:`linear_cka`.

    Returns:
        float64 array [L], CKA per layer.
    """
    min_rows = 4 if debiased else 2
    xs = as_layer_stack(x_layers, "x_layers", min_rows=min_rows)
    ys = as_layer_stack(y_layers, "y_layers", min_rows=min_rows)
    check_pair(xs, ys)
    out = np.empty(xs.shape[0])
    for i in range(xs.shape[0]):
        xc = centre_columns(as_matrix(xs[i], f"x_layers[{i}]", min_rows=min_rows), f"x_layers[{i}]")
        yc = centre_columns(as_matrix(ys[i], f"y_layers[{i}]", min_rows=min_rows), f"y_layers[{i}]")
        out[i] = cka_from_moments(cka_moments(xc, yc, path), debiased=debiased)
    return out
