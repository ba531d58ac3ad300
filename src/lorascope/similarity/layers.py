"""All similarity measures for every layer of one model pair, sharing one Gram matrix per layer.

Biased CKA, debiased CKA and their bootstrap distributions all derive from the same two n×n Gram
matrices, so computing them together costs about as much as one of them alone. This is the entry
point for a drift study: base-model vs fine-tuned hidden states in, per-layer numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.similarity._arrays import as_layer_stack, as_matrix, centre_columns, check_pair
from lorascope.similarity.bootstrap import Ties, bootstrap_indices, resample_counts, weighted_cka
from lorascope.similarity.cka import (
    GramPrecision,
    centred_gram,
    cka_from_moments,
    cka_moments,
    moments_from_grams,
)
from lorascope.similarity.cosine import row_cosines


@dataclass(frozen=True)
class LayerSimilarity:
    """Per-layer similarity of two models on the same samples.

    Attributes:
        cka: float array [L], biased linear CKA.
        cka_debiased: float array [L], debiased linear CKA.
        cosine: float array [L], mean per-sample cosine, or None when the feature sizes differ.
        n_samples: n.
        cka_boot: float array [L, B] of bootstrap replicates of biased CKA, or None (B = 0).
        cka_debiased_boot: float array [L, B], the same for debiased CKA, or None.
        ties: how the debiased replicates treated copies of one sample ("exclude" or "keep").
        seed: seed of the bootstrap index draws (the same resamples for every layer).
    """

    cka: np.ndarray
    cka_debiased: np.ndarray
    cosine: np.ndarray | None
    n_samples: int
    cka_boot: np.ndarray | None = None
    cka_debiased_boot: np.ndarray | None = None
    seed: int | None = None
    ties: str = "exclude"

    @property
    def drift(self) -> np.ndarray:
        """float array [L], 1 − biased CKA."""
        return 1.0 - self.cka

    @property
    def drift_debiased(self) -> np.ndarray:
        """float array [L], 1 − debiased CKA."""
        return 1.0 - self.cka_debiased


def layer_similarity(
    x_layers: Any,
    y_layers: Any,
    *,
    n_resamples: int = 0,
    seed: int = 0,
    gram_precision: GramPrecision = "float64",
    ties: Ties = "exclude",
) -> LayerSimilarity:
    """Biased and debiased linear CKA, mean cosine and (optionally) their bootstrap, for all layers.

    Args:
        x_layers: float array [L, n, d1] (numpy or torch), e.g. base-model mean-pooled hidden states.
        y_layers: float array [L, n, d2], the fine-tuned model on the same samples in the same order.
        n_resamples: bootstrap resamples B over samples (0: none). Resample b uses row indices
            ``bootstrap_indices(n, B, seed)[b]`` for every layer.
        seed: seed of the bootstrap index draws.
        gram_precision: "float64", or "float32" for the n×n Gram products only (about twice as
            fast; CKA within ~1e-9 of float64, see :func:`~lorascope.similarity.cka.centred_gram`).
            All sums stay float64. Forces the Gram path.
        ties: how debiased bootstrap replicates treat two copies of one sample, "exclude"
            (default; replicates centre on the estimate) or "keep"; see
            :mod:`lorascope.similarity.bootstrap`.

    Returns:
        LayerSimilarity with arrays [L] (and [L, B] for the bootstrap).

    Raises:
        LorascopeError: shapes mismatch, n < 4, NaN/inf, a layer constant across samples, or (for
            the cosine) an all-zero row.
    """
    xs = as_layer_stack(x_layers, "x_layers", min_rows=4)
    ys = as_layer_stack(y_layers, "y_layers", min_rows=4)
    check_pair(xs, ys)
    if n_resamples < 0:
        raise LorascopeError(f"n_resamples must be 0 (no bootstrap) or positive; got {n_resamples}")
    if ties not in ("exclude", "keep"):
        raise LorascopeError(f"ties must be 'exclude' or 'keep'; got {ties!r}")
    if gram_precision not in ("float64", "float32"):
        raise LorascopeError(f"gram_precision must be 'float64' or 'float32'; got {gram_precision!r}")
    n_layers, n = xs.shape[0], xs.shape[1]
    same_d = xs.shape[2] == ys.shape[2]
    cka, cka_d = np.empty(n_layers), np.empty(n_layers)
    cosine = np.empty(n_layers) if same_d else None
    counts = resample_counts(bootstrap_indices(n, n_resamples, seed), n) if n_resamples else None
    boot = np.empty((n_layers, n_resamples)) if n_resamples else None
    boot_d = np.empty((n_layers, n_resamples)) if n_resamples else None
    for i in range(n_layers):
        x = as_matrix(xs[i], f"x_layers[{i}]", min_rows=4)
        y = as_matrix(ys[i], f"y_layers[{i}]", min_rows=4)
        if cosine is not None:
            cosine[i] = row_cosines(x, y, f"layer {i}: ").mean()
        xc = centre_columns(x, f"x_layers[{i}]")
        yc = centre_columns(y, f"y_layers[{i}]")
        if counts is None and gram_precision == "float64":
            m = cka_moments(xc, yc, "auto")
        else:
            # The bootstrap and the float32 products need the n×n Grams; the point estimates
            # come from the same Grams so that they match the replicates.
            k, l = centred_gram(xc, gram_precision), centred_gram(yc, gram_precision)
            m = moments_from_grams(k, l)
            if counts is not None:
                assert boot is not None and boot_d is not None  # allocated whenever counts are
                boot[i], boot_d[i] = weighted_cka(k, l, counts, ties=ties)
        cka[i] = cka_from_moments(m)
        cka_d[i] = cka_from_moments(m, debiased=True)
    return LayerSimilarity(
        cka=cka,
        cka_debiased=cka_d,
        cosine=cosine,
        n_samples=n,
        cka_boot=boot,
        cka_debiased_boot=boot_d,
        seed=seed if n_resamples else None,
        ties=ties,
    )
