"""Metric functions against hand-computed values; config parsing and validation."""

import numpy as np
import pytest

from lorascope.config import parse_overrides
from lorascope.errors import ConfigError
from lorascope.train import TrainConfig
from lorascope.train.metrics import accuracy, f1_binary, matthews


def test_metrics_hand_computed():
    gold = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    pred = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    # tp=3, fp=2, fn=1, tn=2
    assert accuracy(pred, gold) == pytest.approx(5 / 8)
    assert f1_binary(pred, gold) == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert matthews(pred, gold) == pytest.approx((3 * 2 - 2 * 1) / np.sqrt(5 * 4 * 3 * 4))
    assert f1_binary(np.zeros(4, int), np.ones(4, int)) == 0.0


def test_overrides_parse_types():
    o = parse_overrides(["lr=1e-4", "epochs=2", "bf16=true", "lora_targets=[q_proj, k_proj]", "report_to=tensorboard"])
    assert o == {"lr": 1e-4, "epochs": 2, "bf16": True, "lora_targets": ["q_proj", "k_proj"], "report_to": "tensorboard"}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["epochs"])


def test_method_default_learning_rates():
    assert TrainConfig(method="lora").lr == 2e-3
    assert TrainConfig(method="full").lr == 5e-5
    assert TrainConfig(method="full", lr=1e-5).lr == 1e-5
