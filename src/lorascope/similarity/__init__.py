"""Representation similarity: arrays of hidden states in, numbers out.

For every measure, x and y hold the same n samples in the same row order; drift is 1 − similarity.
"""

from lorascope.similarity.bootstrap import (
    bootstrap_indices,
    bootstrap_linear_cka,
    bootstrap_linear_cka_layers,
)
from lorascope.similarity.cka import linear_cka, linear_cka_layers
from lorascope.similarity.cosine import mean_cosine, mean_cosine_layers
from lorascope.similarity.layers import LayerSimilarity, layer_similarity
from lorascope.similarity.procrustes import procrustes_distance
from lorascope.similarity.rbf import rbf_cka

__all__ = [
    "LayerSimilarity",
    "bootstrap_indices",
    "bootstrap_linear_cka",
    "bootstrap_linear_cka_layers",
    "layer_similarity",
    "linear_cka",
    "linear_cka_layers",
    "mean_cosine",
    "mean_cosine_layers",
    "procrustes_distance",
    "rbf_cka",
]
