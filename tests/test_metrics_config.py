"""Metric functions against hand-computed values; config parsing and validation."""

import numpy as np
import pytest

from lorascope.config import parse_overrides
from lorascope.errors import ConfigError
from lorascope.metrics import (
    accuracy,
    compute_metrics_fn,
    f1_binary,
    format_number,
    format_scientific,
    format_share,
    format_significant,
    macro_f1,
    matthews,
    predicted_share,
    unflatten_eval,
    weighted_f1,
)
from lorascope.train import TrainConfig


def test_metrics_hand_computed():
    gold = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    pred = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    # tp=3, fp=2, fn=1, tn=2
    assert accuracy(pred, gold, 2) == pytest.approx(5 / 8)
    assert f1_binary(pred, gold, 2) == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert matthews(pred, gold, 2) == pytest.approx((3 * 2 - 2 * 1) / np.sqrt(5 * 4 * 3 * 4))
    assert f1_binary(np.zeros(4, int), np.ones(4, int), 2) == 0.0
    assert matthews(np.zeros(4, int), np.array([0, 1, 0, 1]), 2) == 0.0  # constant predictions: undefined -> 0


def test_numbers_are_written_one_way_and_a_missing_one_as_a_dash():
    """The formatters the report's templates use: decimals, significant digits (six is Python's ``g``),
    scientific notation, shares as percentages; None and NaN are "–", never "None" or "nan"."""
    assert format_number(0.12345) == "0.123" and format_number(1.5, 2, signed=True) == "+1.50"
    assert format_number(-0.004, 2, signed=True) == "-0.00" and format_number(12.7, 0) == "13"
    assert format_significant(0.012345) == "0.0123" and format_significant(2e-05, 6) == "2e-05"
    assert format_significant(0.05, 6) == f"{0.05:g}" and format_significant(1234.5, 4) == "1234"
    assert format_scientific(3.1e-07) == "3.10e-07" and format_scientific(0.0001, 0) == "1e-04"
    assert format_share(0.95) == "95%" and format_share(0.91234, 1) == "91.2%" and format_share(0.5, 1) == f"{100 * 0.5:.1f}%"
    for formatter in (format_number, format_significant, format_scientific, format_share):
        assert formatter(None) == "–" and formatter(float("nan")) == "–"


def test_multiclass_f1_by_hand():
    # 3 labels; label 2 is never predicted, label 1 never occurs in gold.
    gold = np.array([0, 0, 0, 2, 2, 0])
    pred = np.array([0, 1, 0, 0, 0, 0])
    # label 0: tp 3, fp 2, fn 1 -> F1 6/9; label 1: tp 0 -> 0; label 2: tp 0 -> 0.
    assert macro_f1(pred, gold, 3) == pytest.approx((6 / 9) / 3)  # over all 3 labels, not the 2 that appear
    assert weighted_f1(pred, gold, 3) == pytest.approx((6 / 9) * 4 / 6)
    assert predicted_share(pred, 3) == pytest.approx(5 / 6)


def test_trainer_hook_records_per_label_statistics():
    gold = np.array([0, 1, 2, 2, 1, 0])
    logits = np.eye(3)[[0, 1, 1, 2, 1, 2]]  # predictions 0 1 1 2 1 2
    hook = compute_metrics_fn(("accuracy", "macro_f1"), ("neg", "neu", "pos"))
    flat = hook(type("EvalPred", (), {"predictions": logits, "label_ids": gold})())
    rec = unflatten_eval({f"eval_{k}": v for k, v in flat.items()} | {"eval_loss": 0.5}, ("accuracy", "macro_f1"),
                         ("neg", "neu", "pos"))
    assert rec["dev"] == {"accuracy": pytest.approx(4 / 6), "macro_f1": pytest.approx(macro_f1(logits.argmax(1), gold, 3)),
                          "loss": 0.5}
    assert rec["per_label"]["neu"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8),
                                       "support": 2}
    assert rec["per_label"]["neg"]["recall"] == pytest.approx(0.5)
    assert rec["predicted_share"] == pytest.approx(0.5)


def test_overrides_parse_types():
    o = parse_overrides(["lr=1e-4", "epochs=2", "bf16=true", "lora_targets=[q_proj, k_proj]", "report_to=tensorboard"])
    assert o == {"lr": 1e-4, "epochs": 2, "bf16": True, "lora_targets": ["q_proj", "k_proj"], "report_to": "tensorboard"}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["epochs"])


def test_method_default_learning_rates():
    assert TrainConfig(method="lora").lr == 2e-3
    assert TrainConfig(method="full").lr == 5e-5
    assert TrainConfig(method="full", lr=1e-5).lr == 1e-5
