"""Similarity measures: CKA against Kornblith's reference formulas, invariances, batch helpers, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lorascope.errors import LorascopeError
from lorascope.similarity import (
    bootstrap_indices,
    bootstrap_linear_cka,
    bootstrap_linear_cka_layers,
    layer_similarity,
    linear_cka,
    linear_cka_layers,
    mean_cosine,
    mean_cosine_layers,
    procrustes_distance,
    rbf_cka,
)
from lorascope.similarity.bootstrap import weighted_cka


# Reference: the formulas of google-research/representation_similarity Demo.ipynb, in plain
# float64 numpy, written out independently of the package.
def ref_center_gram(gram: np.ndarray, unbiased: bool = False) -> np.ndarray:
    gram = gram.copy()
    if unbiased:
        n = gram.shape[0]
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0, dtype=np.float64)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def ref_cka(gram_x: np.ndarray, gram_y: np.ndarray, debiased: bool = False) -> float:
    gram_x = ref_center_gram(gram_x, unbiased=debiased)
    gram_y = ref_center_gram(gram_y, unbiased=debiased)
    scaled_hsic = gram_x.ravel().dot(gram_y.ravel())
    return scaled_hsic / (np.linalg.norm(gram_x) * np.linalg.norm(gram_y))


def ref_gram_rbf(x: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    dot_products = x.dot(x.T)
    sq_norms = np.diag(dot_products)
    sq_distances = -2 * dot_products + sq_norms[:, None] + sq_norms[None, :]
    sq_median_distance = np.median(sq_distances)
    return np.exp(-sq_distances / (2 * threshold**2 * sq_median_distance))


def ref_debiased_helper(xty, sum_squared_rows_x, sum_squared_rows_y, squared_norm_x, squared_norm_y, n):
    return (
        xty
        - n / (n - 2.0) * sum_squared_rows_x.dot(sum_squared_rows_y)
        + squared_norm_x * squared_norm_y / ((n - 1) * (n - 2))
    )


def ref_feature_space_linear_cka(features_x: np.ndarray, features_y: np.ndarray, debiased: bool = False) -> float:
    features_x = features_x - np.mean(features_x, 0, keepdims=True)
    features_y = features_y - np.mean(features_y, 0, keepdims=True)
    dot_product_similarity = np.linalg.norm(features_x.T.dot(features_y)) ** 2
    normalization_x = np.linalg.norm(features_x.T.dot(features_x))
    normalization_y = np.linalg.norm(features_y.T.dot(features_y))
    if debiased:
        n = features_x.shape[0]
        sum_squared_rows_x = np.einsum("ij,ij->i", features_x, features_x)
        sum_squared_rows_y = np.einsum("ij,ij->i", features_y, features_y)
        squared_norm_x = np.sum(sum_squared_rows_x)
        squared_norm_y = np.sum(sum_squared_rows_y)
        dot_product_similarity = ref_debiased_helper(
            dot_product_similarity, sum_squared_rows_x, sum_squared_rows_y, squared_norm_x, squared_norm_y, n
        )
        normalization_x = np.sqrt(
            ref_debiased_helper(
                normalization_x**2, sum_squared_rows_x, sum_squared_rows_x, squared_norm_x, squared_norm_x, n
            )
        )
        normalization_y = np.sqrt(
            ref_debiased_helper(
                normalization_y**2, sum_squared_rows_y, sum_squared_rows_y, squared_norm_y, squared_norm_y, n
            )
        )
    return dot_product_similarity / (normalization_x * normalization_y)


def related_pair(seed: int, n: int = 50, d1: int = 20, d2: int = 30, noise: float = 1.0):
    """x [n, d1] and y [n, d2] = linear map of x plus noise, with a non-zero mean on both."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d1)) + 3.0
    y = x @ rng.standard_normal((d1, d2)) + noise * rng.standard_normal((n, d2)) - 2.0
    return x, y


def random_orthogonal(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("path", ["gram", "feature", "auto"])
def test_cka_of_x_with_itself_is_one(debiased, path):
    x, _ = related_pair(0)
    assert linear_cka(x, x, debiased=debiased, path=path) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_invariant_to_rotation_and_isotropic_scaling(debiased):
    x, y = related_pair(1)
    base = linear_cka(x, y, debiased=debiased)
    qx, qy = random_orthogonal(x.shape[1], 2), random_orthogonal(y.shape[1], 3)
    assert linear_cka(x @ qx, y, debiased=debiased) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x, y @ qy, debiased=debiased) == pytest.approx(base, abs=1e-12)
    assert linear_cka(7.5 * x, y, debiased=debiased) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x, 0.01 * y, debiased=debiased) == pytest.approx(base, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_not_invariant_to_general_invertible_map(debiased):
    x, y = related_pair(4)
    rng = np.random.default_rng(5)
    a = rng.standard_normal((x.shape[1], x.shape[1])) @ np.diag(np.logspace(-2, 2, x.shape[1]))
    assert abs(np.linalg.det(a)) > 0
    assert abs(linear_cka(x @ a, y, debiased=debiased) - linear_cka(x, y, debiased=debiased)) > 0.05
    # Even a map of x onto itself moves CKA(x, x·A) away from 1.
    assert linear_cka(x, x @ a, debiased=debiased) < 0.95


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(40, 10, 25), (30, 200, 150), (12, 5, 300)])
def test_gram_and_feature_paths_agree(debiased, shape):
    n, d1, d2 = shape
    x, y = related_pair(6, n=n, d1=d1, d2=d2)
    gram = linear_cka(x, y, debiased=debiased, path="gram")
    feature = linear_cka(x, y, debiased=debiased, path="feature")
    assert abs(gram - feature) <= 1e-10


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("seed", [7, 8, 9])
def test_matches_reference_notebook(debiased, seed):
    x, y = related_pair(seed, n=37, d1=11, d2=64, noise=2.0)
    expected_feature = ref_feature_space_linear_cka(x, y, debiased=debiased)
    expected_gram = ref_cka(x @ x.T, y @ y.T, debiased=debiased)
    assert expected_feature == pytest.approx(expected_gram, abs=1e-10)  # the reference agrees with itself
    for path in ("gram", "feature"):
        assert linear_cka(x, y, debiased=debiased, path=path) == pytest.approx(expected_feature, abs=1e-10)


def test_debiased_near_zero_for_independent_data_where_biased_is_not():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((64, 512))
    y = rng.standard_normal((64, 512))
    assert abs(linear_cka(x, y, debiased=True)) < 0.05
    assert linear_cka(x, y) > 0.5


def test_accepts_torch_tensors_and_float32():
    x, y = related_pair(11)
    expected = linear_cka(x, y)
    assert linear_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(expected, abs=1e-12)
    tx, ty = torch.from_numpy(x).float(), torch.from_numpy(y).to(torch.bfloat16)
    assert linear_cka(tx, ty) == pytest.approx(expected, abs=1e-2)
    assert linear_cka(x.astype(np.float32), y.astype(np.float32)) == pytest.approx(expected, abs=1e-6)


def stack_layers(seed: int, n_layers: int = 4, n: int = 30, d1: int = 12, d2: int = 12):
    pairs = [related_pair(seed + i, n=n, d1=d1, d2=d2, noise=0.5 + i) for i in range(n_layers)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


@pytest.mark.parametrize("debiased", [False, True])
def test_layer_helpers_match_single_pair_functions(debiased):
    xs, ys = stack_layers(12)
    got = linear_cka_layers(xs, ys, debiased=debiased)
    expected = [linear_cka(x, y, debiased=debiased) for x, y in zip(xs, ys)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        mean_cosine_layers(xs, ys), [mean_cosine(x, y) for x, y in zip(xs, ys)], rtol=0, atol=1e-12
    )


def test_layer_similarity_bundles_everything():
    xs, ys = stack_layers(13)
    for n_resamples in (0, 25):
        res = layer_similarity(xs, ys, n_resamples=n_resamples, seed=4)
        np.testing.assert_allclose(res.cka, linear_cka_layers(xs, ys), atol=1e-12)
        np.testing.assert_allclose(res.cka_debiased, linear_cka_layers(xs, ys, debiased=True), atol=1e-12)
        np.testing.assert_allclose(res.cosine, mean_cosine_layers(xs, ys), atol=1e-12)
        np.testing.assert_allclose(res.drift, 1.0 - res.cka)
    boot = bootstrap_linear_cka_layers(xs, ys, n_resamples=25, seed=4)
    boot_d = bootstrap_linear_cka_layers(xs, ys, n_resamples=25, seed=4, debiased=True)
    np.testing.assert_allclose(res.cka_boot, boot, atol=1e-12)
    np.testing.assert_allclose(res.cka_debiased_boot, boot_d, atol=1e-12)
    assert layer_similarity(xs, ys[:, :, :5]).cosine is None  # different widths: no per-sample cosine


@pytest.mark.parametrize("debiased", [False, True])
def test_bootstrap_equals_explicit_resampling(debiased):
    x, y = related_pair(14, n=25, d1=8, d2=40)
    boot = bootstrap_linear_cka(x, y, n_resamples=40, seed=3, debiased=debiased, ties="keep")
    idx = bootstrap_indices(25, 40, 3)
    assert np.array_equal(idx, bootstrap_indices(25, 40, 3))  # reproducible draws
    assert any(len(set(row)) < 25 for row in idx)  # duplicates do occur
    explicit = [linear_cka(x[i], y[i], debiased=debiased) for i in idx]
    np.testing.assert_allclose(boot, explicit, rtol=0, atol=1e-10)
    # and against the notebook formulas on the explicit resample, as an independent check
    np.testing.assert_allclose(
        boot[:5], [ref_feature_space_linear_cka(x[i], y[i], debiased=debiased) for i in idx[:5]], atol=1e-10
    )


def test_debiased_bootstrap_excluding_ties_equals_explicit_masked_resampling():
    x, y = related_pair(23, n=25, d1=8, d2=40)
    boot = bootstrap_linear_cka(x, y, n_resamples=40, seed=3, debiased=True)  # ties="exclude"
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = []
    for idx in bootstrap_indices(25, 40, 3):
        same = idx[:, None] == idx[None, :]  # pairs of copies of one sample, diagonal included
        kb, lb = xc[idx] @ xc[idx].T, yc[idx] @ yc[idx].T
        kb[same], lb[same] = 0.0, 0.0
        expected.append(ref_cka(kb, lb, debiased=True))
    np.testing.assert_allclose(boot, expected, rtol=0, atol=1e-10)
    biased = bootstrap_linear_cka(x, y, n_resamples=40, seed=3)
    assert np.array_equal(biased, bootstrap_linear_cka(x, y, n_resamples=40, seed=3, ties="keep"))


def test_debiased_bootstrap_centres_on_the_estimate_only_when_ties_are_excluded():
    rng = np.random.default_rng(24)
    x = rng.standard_normal((64, 512))
    y = x + 3.0 * rng.standard_normal((64, 512))
    estimate = linear_cka(x, y, debiased=True)
    excluded = bootstrap_linear_cka(x, y, n_resamples=300, seed=0, debiased=True)
    kept = bootstrap_linear_cka(x, y, n_resamples=300, seed=0, debiased=True, ties="keep")
    assert abs(np.mean(excluded) - estimate) < np.std(excluded)
    assert np.mean(kept) - estimate > 5 * np.std(kept)


@pytest.mark.parametrize("debiased", [False, True])
def test_bootstrap_layers_match_single_pair_bootstrap(debiased):
    xs, ys = stack_layers(15, n=20)
    got = bootstrap_linear_cka_layers(xs, ys, n_resamples=30, seed=9, debiased=debiased)
    assert got.shape == (4, 30)
    for i in range(4):
        np.testing.assert_allclose(
            got[i], bootstrap_linear_cka(xs[i], ys[i], n_resamples=30, seed=9, debiased=debiased), atol=1e-12
        )


def test_weighted_cka_gives_nan_for_a_resample_of_one_repeated_row():
    x, y = related_pair(16, n=5)
    xc, yc = x - x.mean(0), y - y.mean(0)
    counts = np.array([[5.0, 0, 0, 0, 0], [1.0, 1, 1, 1, 1]])
    biased, debiased = weighted_cka(xc @ xc.T, yc @ yc.T, counts)
    assert np.isnan(biased[0]) and np.isnan(debiased[0])
    _, kept = weighted_cka(xc @ xc.T, yc @ yc.T, counts, ties="keep")
    assert kept[1] == pytest.approx(debiased[1], abs=1e-12)  # no ties, no difference
    assert biased[1] == pytest.approx(linear_cka(x, y), abs=1e-12)
    assert debiased[1] == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-12)


def test_mean_cosine_hand_computed():
    x = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    y = np.array([[0.0, 2.0], [2.0, 2.0], [-3.0, -4.0]])
    assert mean_cosine(x, y) == pytest.approx((0.0 + 1.0 - 1.0) / 3, abs=1e-15)


def test_rbf_cka_matches_reference_notebook():
    x, y = related_pair(17, n=30, d1=6, d2=9)
    for debiased in (False, True):
        expected = ref_cka(ref_gram_rbf(x, 0.8), ref_gram_rbf(y, 0.8), debiased=debiased)
        assert rbf_cka(x, y, sigma_frac=0.8, debiased=debiased) == pytest.approx(expected, abs=1e-10)
    assert rbf_cka(x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(40, 6, 9), (15, 60, 80)])
def test_procrustes_distance(shape):
    n, d1, d2 = shape
    x, y = related_pair(18, n=n, d1=d1, d2=d2)
    q = random_orthogonal(d1, 19)
    assert procrustes_distance(x, 4.0 * x @ q + 1.0) == pytest.approx(0.0, abs=1e-10)
    xc, yc = x - x.mean(0), y - y.mean(0)
    xc, yc = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    expected = 2.0 - 2.0 * np.linalg.svd(xc.T @ yc, compute_uv=False).sum()
    assert procrustes_distance(x, y) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x, y: linear_cka(x, y[:-1]), "same samples"),
        (lambda x, y: linear_cka(x[0], y), "2-D"),
        (lambda x, y: linear_cka(np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), y), "NaN or inf"),
        (lambda x, y: linear_cka(x, np.full_like(y, np.inf)), "NaN or inf"),
        (lambda x, y: linear_cka(x[:1], y[:1]), "at least 2"),
        (lambda x, y: linear_cka(x[:3], y[:3], debiased=True), "at least 4"),
        (lambda x, y: linear_cka(np.ones_like(x) * 0.1, y), "zero variance"),
        (lambda x, y: linear_cka(x, y, path="fast"), "path must be"),
        (lambda x, y: linear_cka_layers(x, y), "3-D"),
        (lambda x, y: linear_cka_layers(x[None], y[None, :-2]), "same samples"),
        (lambda x, y: bootstrap_linear_cka(x, y[:-1]), "same samples"),
        (lambda x, y: bootstrap_linear_cka(x, y, n_resamples=0), "n_resamples"),
        (lambda x, y: bootstrap_linear_cka(x, y, debiased=True, ties="drop"), "ties"),
        (lambda x, y: layer_similarity(x[None, :3], y[None, :3]), "at least 4"),
        (lambda x, y: mean_cosine(x, y), "same number of features"),
        (lambda x, y: mean_cosine(x, np.vstack([x[:-1], np.zeros((1, x.shape[1]))])), "all-zero row"),
        (lambda x, y: mean_cosine_layers(x[None], np.zeros_like(x)[None]), "layer 0: y has"),
        (lambda x, y: rbf_cka(x, y, sigma_frac=0.0), "sigma_frac"),
    ],
)
def test_bad_input_raises_lorascope_error(call, match):
    x, y = related_pair(20, n=10, d1=4, d2=6)
    with pytest.raises(LorascopeError, match=match):
        call(x, y)


def test_constant_layer_is_named():
    xs, ys = stack_layers(21)
    xs[2] = 5.0
    with pytest.raises(LorascopeError, match=r"x_layers\[2\] has zero variance"):
        linear_cka_layers(xs, ys)


def test_float32_gram_agrees_with_float64_within_1e6():
    rng = np.random.default_rng(22)
    n_layers, n, d = 3, 120, 400
    xs = rng.standard_normal((n_layers, n, d)).astype(np.float32)
    xs[:, :, :4] *= 200.0  # outlier features, as in LLM hidden states
    xs += 30.0  # and a large shared offset
    ys = (xs + 2.0 * rng.standard_normal((n_layers, n, d))).astype(np.float32)
    ys[1] = rng.standard_normal((n, d))  # an unrelated layer: debiased CKA near 0
    exact = layer_similarity(xs, ys, n_resamples=50, seed=1)
    fast = layer_similarity(xs, ys, n_resamples=50, seed=1, gram_precision="float32")
    for field in ("cka", "cka_debiased", "cosine", "cka_boot", "cka_debiased_boot"):
        assert np.max(np.abs(getattr(fast, field) - getattr(exact, field))) <= 1e-6, field
    with pytest.raises(LorascopeError, match="precision"):
        layer_similarity(xs, ys, gram_precision="float16")
