"""The sweep's frontier, the comparison at matched accuracy and the method x setting interaction."""

from __future__ import annotations

import numpy as np
import pytest

from lorascope.stats.frontier import SweepPoint, frontier_table, matched_accuracy, setting_interaction

SEEDS = 8


def _point(method: str, setting: float, accuracy: float, drift: float, rng, noise: float = 0.1) -> SweepPoint:
    """A point whose seeds scatter around (accuracy, drift): lognormal drift, normal accuracy."""
    return SweepPoint(label=f"{method}_{setting:g}", method=method, setting=setting,
                      metric=accuracy + rng.normal(0, 0.005, SEEDS),
                      drift=drift * np.exp(rng.normal(0, noise, SEEDS)))


def _curve(accuracy: float) -> float:
    """One shared frontier: drift rises with the accuracy a learning rate buys."""
    return 0.02 * np.exp(20 * (accuracy - 0.70))


def test_frontier_table_gives_geometric_means_with_asymmetric_intervals():
    drift = np.array([0.004, 0.01, 0.02, 0.109, 0.03, 0.015, 0.008, 0.05])
    row = frontier_table([SweepPoint("lora_a", "lora", 1e-3, np.full(8, 0.8), drift)])[0]
    assert row["drift_gmean"] == pytest.approx(np.exp(np.log(drift).mean()))
    low, high = row["drift_ci"]
    assert low < row["drift_gmean"] < high
    assert high - row["drift_gmean"] > 1.5 * (row["drift_gmean"] - low)  # skewed data, skewed interval


def test_lora_drifting_half_as_much_at_every_accuracy_is_found():
    rng = np.random.default_rng(0)
    points = [_point("lora", lr, acc, 0.5 * _curve(acc), rng) for lr, acc in [(5e-4, 0.72), (1e-3, 0.76), (2e-3, 0.80)]]
    points += [_point("full", lr, acc, _curve(acc), rng) for lr, acc in [(2.5e-5, 0.71), (5e-5, 0.75), (1e-4, 0.79)]]
    result = matched_accuracy(points, n_resamples=400)
    assert result["outcome"] == "less"
    assert result["ratio"] == pytest.approx(0.5, rel=0.1)
    assert result["ci"][1] < 1 and result["p"] < 0.01
    swapped = [SweepPoint(p.label, {"lora": "full", "full": "lora"}[p.method], p.setting, p.metric, p.drift) for p in points]
    assert matched_accuracy(swapped, n_resamples=400)["outcome"] == "more"


def test_a_hand_picked_pair_can_disagree_with_the_matched_comparison():
    """Both methods on one frontier: LoRA's learning rates buy more accuracy (and drift) than full
    FT's. The top learning rate of each says "LoRA drifts more"; at matched accuracy there is no
    difference."""
    rng = np.random.default_rng(1)
    points = [_point("lora", lr, acc, _curve(acc), rng) for lr, acc in [(5e-4, 0.74), (1e-3, 0.78), (2e-3, 0.82)]]
    points += [_point("full", lr, acc, _curve(acc), rng) for lr, acc in [(2.5e-5, 0.70), (5e-5, 0.74), (1e-4, 0.78)]]
    top = {p.method: p for p in points if p.setting in (2e-3, 1e-4)}
    assert np.exp(np.log(top["lora"].drift).mean()) > 1.5 * np.exp(np.log(top["full"].drift).mean())
    result = matched_accuracy(points, n_resamples=400)
    assert result["outcome"] == "undecided", result["statement"]
    assert result["ratio"] == pytest.approx(1.0, abs=0.15)


def test_the_p_value_and_the_interval_tell_the_same_story():
    rng = np.random.default_rng(4)
    for ratio in (0.6, 0.8, 0.9, 1.0, 1.3):
        points = [_point("lora", lr, acc, ratio * _curve(acc), rng, noise=0.4) for lr, acc in [(1e-3, 0.72), (2e-3, 0.78)]]
        points += [_point("full", lr, acc, _curve(acc), rng, noise=0.4) for lr, acc in [(5e-5, 0.71), (1e-4, 0.77)]]
        result = matched_accuracy(points, n_resamples=2000)
        excludes_one = result["ci"][1] < 1 or result["ci"][0] > 1
        assert excludes_one == (result["p"] < 0.05), (ratio, result["ci"], result["p"])
        assert result["ci_method"].startswith("bootstrap over seeds, each point's deviations scaled")


def test_one_seed_per_point_gives_no_interval_and_decides_nothing():
    points = [SweepPoint(f"{m}_{s}", m, s, np.array([acc]), np.array([d])) for m, s, acc, d in
              [("lora", 1, 0.70, 0.01), ("lora", 2, 0.80, 0.02), ("full", 1, 0.71, 0.04), ("full", 2, 0.79, 0.08)]]
    result = matched_accuracy(points, n_resamples=50)
    assert result["outcome"] == "undecided" and result["ci"] == [None, None] and result["p"] is None
    assert result["ratio"] == pytest.approx(0.25, rel=0.1) and "every point has one seed" in result["statement"]


def test_frontiers_that_do_not_overlap_are_not_compared():
    rng = np.random.default_rng(2)
    points = [_point("lora", 1e-3, 0.60, 0.01, rng), _point("lora", 2e-3, 0.62, 0.02, rng),
              _point("full", 5e-5, 0.80, 0.05, rng), _point("full", 1e-4, 0.82, 0.06, rng)]
    result = matched_accuracy(points, n_resamples=50)
    assert result["outcome"] == "no_overlap" and result["ratio"] is None
    assert "do not overlap" in result["statement"]


def test_the_interaction_test_finds_a_reduction_that_depends_on_the_setting():
    rng = np.random.default_rng(3)
    lrs = [1, 2, 3, 4]
    # LoRA's drift relative to full's grows with the level: 0.25x, 0.5x, 1x, 2x.
    flat = [_point("full", lr, 0.8, 0.04, rng) for lr in lrs]
    rising = [_point("lora", lr, 0.8, 0.04 * 2.0 ** (lr - 3), rng) for lr in lrs]
    steady = [_point("lora", lr, 0.8, 0.02, rng) for lr in lrs]
    found = setting_interaction(rising + flat)
    assert found["p"] < 1e-6 and found["df"] == [3, 56] and "depends" in found["statement"]
    absent = setting_interaction(steady + flat)
    assert absent["p"] > 0.01 and "not shown to depend" in absent["statement"]


def test_the_interaction_needs_matching_levels():
    rng = np.random.default_rng(4)
    points = [_point("lora", 1, 0.8, 0.02, rng), _point("lora", 2, 0.8, 0.02, rng), _point("full", 1, 0.8, 0.04, rng)]
    result = setting_interaction(points)
    assert result["p"] is None and "same number" in result["statement"]
