"""Jackknife pseudo-values: per-example scores for metrics that are not means over examples."""

from __future__ import annotations

import numpy as np
import pytest

from lorascope.metrics import METRICS
from lorascope.stats.jackknife import pseudo_values


def _sample(rng, n=300):
    gold = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.8, gold, 1 - gold)
    return pred, gold


def test_accuracy_pseudo_values_are_the_per_example_correctness():
    pred, gold = _sample(np.random.default_rng(0), 50)
    assert pseudo_values(METRICS["accuracy"], pred, gold, 2) == pytest.approx((pred == gold).astype(float))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["f1", "matthews", "macro_f1"])
def test_pseudo_values_average_to_the_metric_and_carry_its_sampling_variance(name):
    """Their mean is the metric; their variance / n matches the metric's variance over resampled dev
    sets (bootstrap, 2,000 resamples) within 25%: what the crossed analysis takes as the dev set's share."""
    rng = np.random.default_rng(1)
    pred, gold = _sample(rng)
    metric = METRICS[name]
    values = pseudo_values(metric, pred, gold, 2)
    assert values.mean() == pytest.approx(metric(pred, gold, 2))
    boot = [metric(pred[idx], gold[idx], 2) for idx in (rng.integers(0, 300, 300) for _ in range(2000))]
    assert values.var(ddof=1) / 300 == pytest.approx(np.var(boot, ddof=1), rel=0.25)
