"""Did a run learn its task? Constant predictions, or a main metric at majority level, say no.

A drift comparison between runs that learned nothing measures noise around two untrained
heads (reductions of -300% with infinite intervals), so ``train`` warns, ``metrics.json``
records the check, and drift verdicts over such runs are marked not interpretable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.metrics import score

# A run "learned" when its main dev metric beats the majority-class baseline by this much
# (2 points of accuracy); the report's † flag uses the same margin on the mean over seeds.
LEARNED_MARGIN = 0.02


def at_majority_level(value: float, majority: float) -> bool:
    """The one rule for "did not learn": a main metric (one run's, or a method's mean over seeds)
    that is not ``LEARNED_MARGIN`` above the majority-class baseline."""
    return value < majority + LEARNED_MARGIN


def majority_label(train_labels: np.ndarray, n_labels: int) -> int:
    """The most frequent label id of the training labels (``int [n]``); ties go to the lower id."""
    return int(np.bincount(train_labels, minlength=n_labels).argmax())


def majority_score(train_labels: np.ndarray, gold: np.ndarray, metric: str, n_labels: int) -> float:
    """``metric`` of predicting the training majority label for every dev row (``gold: int [n]``)."""
    label = majority_label(train_labels, n_labels)
    return score(np.full_like(gold, label), gold, (metric,), n_labels)[metric]


def learning_check(
    metric: str, value: float | None, majority: float, predicted_share: float | None
) -> dict[str, Any]:
    """Whether a run learned, and why not.

    Args:
        metric: the task's main metric.
        value: the run's dev value of it (None when the run has none, e.g. diverged).
        majority: the majority-class baseline's value of it on the same dev rows.
        predicted_share: share of dev predictions given to the most predicted label.

    Returns:
        ``{"learned": bool, "reasons": [str], "majority_baseline": float, "margin": float,
        "predicted_share": float | None}``.
    """
    reasons = []
    if predicted_share is not None and predicted_share >= 1.0:
        reasons.append("every dev prediction is the same label")
    if value is not None and at_majority_level(value, majority):
        reasons.append(
            f"dev {metric} {100 * value:.1f}% is not {100 * LEARNED_MARGIN:.0f} points above the "
            f"majority-class baseline ({100 * majority:.1f}%)"
        )
    return {
        "learned": not reasons,
        "reasons": reasons,
        "majority_baseline": majority,
        "margin": LEARNED_MARGIN,
        "predicted_share": predicted_share,
    }
