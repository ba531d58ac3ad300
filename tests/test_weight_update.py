"""The weight lens against independent references, its controls, and PEFT's own intruder count."""

from __future__ import annotations

import numpy as np
import pytest

from lorascope.errors import LorascopeError
from lorascope.weight_update import (
    count_intruders,
    entropy_rank,
    intruder_similarity,
    lora_delta,
    matrix_update,
    relative_update,
    stable_rank,
)

RNG = np.random.default_rng(0)


def _left_singular_vectors_by_eigh(w: np.ndarray) -> np.ndarray:
    """W's left singular vectors from the eigenvectors of W Wᵀ, largest first: a route that never calls svd."""
    values, vectors = np.linalg.eigh(w @ w.T)
    return vectors[:, np.argsort(values)[::-1]]


@pytest.mark.parametrize("shape", [(24, 24), (16, 40), (40, 16)])
def test_intruder_similarity_matches_a_direct_reference(shape):
    w0 = RNG.standard_normal(shape)
    w1 = w0 + 0.5 * RNG.standard_normal(shape)
    k = min(shape)
    u0 = _left_singular_vectors_by_eigh(w0)[:, :k]
    u1 = _left_singular_vectors_by_eigh(w1)[:, :10]
    expected = [max(abs(float(a @ b)) / (np.linalg.norm(a) * np.linalg.norm(b)) for b in u0.T) for a in u1.T]
    np.testing.assert_allclose(intruder_similarity(w0, w1, top_k=10), expected, atol=1e-8)


def test_ranks_and_size_match_their_definitions():
    delta = RNG.standard_normal((30, 20)) @ np.diag(np.linspace(3, 0.1, 20)) @ RNG.standard_normal((20, 20))
    s = np.sqrt(np.clip(np.linalg.eigvalsh(delta.T @ delta), 0, None))[::-1]
    assert stable_rank(delta) == pytest.approx(np.sum(s**2) / np.linalg.norm(delta, 2) ** 2, rel=1e-10)
    p = s / s.sum()
    assert entropy_rank(delta) == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-8)
    w0 = RNG.standard_normal((30, 20))
    assert relative_update(w0, w0 + delta) == pytest.approx(np.sqrt(np.sum(delta**2) / np.sum(w0**2)), rel=1e-12)


def test_entropy_rank_of_equal_singular_values_is_the_rank():
    q = np.linalg.qr(RNG.standard_normal((20, 20)))[0]
    assert entropy_rank(q[:, :4] @ q[:, 4:8].T) == pytest.approx(4.0, rel=1e-9)
    assert stable_rank(q[:, :4] @ q[:, 4:8].T) == pytest.approx(4.0, rel=1e-9)


def test_an_unchanged_matrix_and_lora_at_initialisation_show_no_update_and_no_intruders():
    w0 = RNG.standard_normal((48, 32))
    copy = matrix_update(w0, w0.copy())
    a = RNG.standard_normal((8, 32)) * 0.1
    at_init = matrix_update(w0, w0 + lora_delta(a, np.zeros((48, 8)), alpha=16, rank=8))  # PEFT initialises B = 0
    for result in (copy, at_init):
        assert result.relative_update == 0.0 and result.stable_rank == 0.0 and result.entropy_rank == 0.0
        assert result.intruders == 0
        np.testing.assert_allclose(result.intruder_similarity, 1.0, atol=1e-9)


def test_a_planted_rank_one_update_outside_the_spectrum_is_an_intruder():
    w0 = RNG.standard_normal((128, 128))
    u = RNG.standard_normal(128)
    u /= np.linalg.norm(u)  # spread over all of W₀'s directions: no single one is close to it
    v = RNG.standard_normal(128)
    v /= np.linalg.norm(v)
    top = np.linalg.norm(w0, 2)
    found = matrix_update(w0, w0 + 2 * top * np.outer(u, v))
    assert found.intruders == 1 and found.intruder_similarity[0] < 0.5
    assert found.stable_rank == pytest.approx(1.0) and found.entropy_rank == pytest.approx(1.0)
    # The same size of update along W₀'s own leading direction is no intruder.
    u0 = np.linalg.svd(w0)[0][:, 0]
    assert matrix_update(w0, w0 + 2 * top * np.outer(u0, v)).intruders == 0


def test_the_epsilon_sweep_counts_monotonically():
    sims = np.array([0.05, 0.2, 0.45, 0.7, 0.99])
    assert [count_intruders(sims, e) for e in (0.1, 0.3, 0.5, 0.9, 1.0)] == [1, 2, 3, 4, 5]


def test_bad_matrices_are_refused_by_name():
    with pytest.raises(LorascopeError, match=r"w1 \(3, 4\).*shape"):
        relative_update(np.ones((4, 3)), np.ones((3, 4)))
    with pytest.raises(LorascopeError, match="w0: expected a non-empty 2-D"):
        matrix_update(np.ones(5), np.ones(5))
    with pytest.raises(LorascopeError, match="NaN"):
        stable_rank(np.array([[np.nan, 1.0], [0.0, 1.0]]))


@pytest.mark.parametrize("rslora", [False, True])
def test_lora_delta_and_intruder_count_agree_with_peft(rslora):
    """PEFT's own merge (get_delta_weight) and its intruder detection (reduce_intruder_dimension) on the same adapter."""
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.intruders import reduce_intruder_dimension

    torch.manual_seed(0)
    base = torch.nn.Sequential()
    base.add_module("proj", torch.nn.Linear(64, 64, bias=False))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["proj"], use_rslora=rslora))
    layer = model.base_model.model.proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 2.0)  # a trained adapter: B away from its zero init
    w0 = layer.get_base_layer().weight.detach().numpy()
    a, b = layer.lora_A["default"].weight.detach().numpy(), layer.lora_B["default"].weight.detach().numpy()
    delta = lora_delta(a, b, alpha=8, rank=4, rslora=rslora)
    np.testing.assert_allclose(delta, layer.get_delta_weight("default").detach().numpy(), rtol=1e-5, atol=1e-6)

    logged: list[str] = []
    reduce_intruder_dimension(model, logging_sink=logged.append)
    peft_count = int(logged[0].split("Intruders: ")[1]) if "Intruders: " in logged[0] else 0
    ours = matrix_update(w0, w0 + delta).intruders
    assert ours == peft_count and ours > 0, (ours, logged)


@pytest.mark.parametrize("rslora", [False, True])
def test_dora_delta_is_what_peft_merges(rslora):
    """DoRA's update (rows rescaled to the learned magnitude) equals the weight PEFT's own merge writes."""
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model

    from lorascope.weight_update import dora_delta

    torch.manual_seed(0)
    base = torch.nn.Sequential()
    base.add_module("proj", torch.nn.Linear(48, 32, bias=False))
    w0 = base.proj.weight.detach().clone().numpy()
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["proj"], use_dora=True, use_rslora=rslora))
    layer = model.base_model.model.proj
    with torch.no_grad():  # a trained adapter: B away from zero, magnitudes away from the base's row norms
        layer.lora_B["default"].weight.normal_(0, 0.5)
        layer.lora_magnitude_vector["default"].weight.mul_(torch.linspace(0.5, 1.5, 32))
    a, b = layer.lora_A["default"].weight.detach().numpy(), layer.lora_B["default"].weight.detach().numpy()
    magnitude = layer.lora_magnitude_vector["default"].weight.detach().numpy()
    merged = model.merge_and_unload().proj.weight.detach().numpy()
    delta = dora_delta(w0, a, b, magnitude, alpha=8, rank=4, rslora=rslora)
    np.testing.assert_allclose(w0 + delta, merged, rtol=1e-5, atol=1e-6)
    # Plain LoRA's update would not be it: the rescaling is what DoRA adds.
    assert not np.allclose(w0 + lora_delta(a, b, alpha=8, rank=4, rslora=rslora), merged, atol=1e-3)


@pytest.mark.parametrize("shape", [(24, 24), (16, 40), (40, 16)])
def test_w0s_singular_vectors_computed_once_give_the_same_measures(shape):
    """The lens computes W₀'s left singular vectors once per matrix for every run: the numbers must be
    those of computing them each time, and vectors of another matrix's shape are refused."""
    from lorascope.weight_update import left_singular_vectors, matched_intruders

    w0 = RNG.standard_normal(shape)
    w1 = w0 + 0.3 * RNG.standard_normal(shape)
    u0 = left_singular_vectors(w0)
    assert u0.shape == (shape[0], min(shape))
    assert matrix_update(w0, w1, top_k=8, u0=u0) == matrix_update(w0, w1, top_k=8)
    assert matched_intruders(w0, w1 - w0, 0.2, top_k=8, u0=u0) == matched_intruders(w0, w1 - w0, 0.2, top_k=8)
    with pytest.raises(LorascopeError, match="u0 .* expected W₀'s left singular vectors"):
        intruder_similarity(w0, w1, u0=u0[:, :-1])
