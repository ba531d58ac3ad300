"""Did a run learn its task? Constant predictions, or a main metric at majority level, say no.

A drift comparison between runs that learned nothing measures noise around two untrained
heads (reductions of -300% with infinite intervals), so ``train`` warns, ``metrics.json``
records the check, and drift verdicts over such runs are marked not interpretable.

Two related warnings read a run's evaluations during training: a restored checkpoint that
predicts one label for everything while another checkpoint did not (its selection hid what the
run learned), and a main metric near-perfect from the first evaluation on (leaked labels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lorascope.metrics import format_metric, metric_name, score, versus_majority

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
        ``{"learned": bool, "reasons": [str], "metric": str, "majority_baseline": float, "margin": float,
        "predicted_share": float | None}``; a reason says where the value stands against the baseline
        (below it by how much, or above it by less than the margin), on the metric's own scale.
    """
    reasons = []
    if predicted_share is not None and predicted_share >= 1.0:
        reasons.append("every dev prediction is the same label")
    if value is not None and at_majority_level(value, majority):
        reasons.append(
            f"dev {metric_name(metric)} {format_metric(metric, value)} is "
            f"{versus_majority(metric, value, majority, LEARNED_MARGIN)}"
        )
    return {
        "learned": not reasons,
        "reasons": reasons,
        "metric": metric,
        "majority_baseline": majority,
        "margin": LEARNED_MARGIN,
        "predicted_share": predicted_share,
    }


# The main metric at or above which a first evaluation is "near-perfect": no GLUE-like task is
# solved to 99% after one epoch, but a task whose text gives its label away is.
LEAK_LEVEL = 0.99


def constant_restored_warning(
    curve: list[dict[str, Any]], best_step: int | None, metric: str, select_by: str, split: str
) -> str | None:
    """A warning when the restored checkpoint predicts one label for everything but another evaluated one learned.

    Loss-based selection can keep the checkpoint that predicts only the majority label (its
    loss is low on an imbalanced task) over a later one that learned: the run then looks as if
    it never learned anything. "Learned" is: did not predict one label for everything, and
    scored higher on the main metric. A checkpoint that spread its predictions but scored no
    higher was hidden by nothing (the learning check reports such a run).

    Args:
        curve: one entry per evaluation during training (``step``, ``epoch``, ``predicted_share``
            and the value of ``metric``), as ``metrics.json``'s ``eval_curve``.
        best_step: the step of the restored checkpoint (None: nothing was restored).
        metric: the task's main metric.
        select_by: what chose the checkpoint (``loss`` or ``metric``); under ``metric`` no
            evaluated checkpoint scored higher than the kept one, so there is nothing to warn of.
        split: the examples the evaluations ran on (``dev`` or ``selection_split``).

    Returns:
        The warning, or None.
    """
    if select_by != "loss":
        return None
    restored = next((e for e in curve if e.get("step") == best_step), None)
    if restored is None or (restored.get("predicted_share") or 0.0) < 1.0:
        return None
    kept = restored.get(metric)
    learned = [e for e in curve if e.get("predicted_share") is not None and e["predicted_share"] < 1.0
               and e.get(metric) is not None and (kept is None or e[metric] > kept)]
    if not learned:
        return None
    other = max(learned, key=lambda e: e[metric])
    where = split.replace("_", " ")
    message = (
        f"the restored checkpoint (step {best_step}, epoch {restored['epoch']:g}) predicts one label for every "
        f"{where} example, but the checkpoint at step {other['step']} (epoch {other['epoch']:g}) did not "
        f"({metric} {format_metric(metric, other[metric])} against {format_metric(metric, kept)})"
    )
    return message + f"; the lowest {where} loss chose it (select_by: metric chooses by {metric})"


def leak_check(metric: str, first: dict[str, Any] | None, final: float | None, split: str) -> dict[str, Any]:
    """Whether the run's main metric was near-perfect from its first evaluation on: a sign of leaked labels.

    Dev examples whose text contains their label, or that also occur in the training data, are
    solved before anything has been learned; a score that starts and stays at ``LEAK_LEVEL``
    measures that, not the method. Suspected when both the first evaluation during training
    and the reported dev value reach ``LEAK_LEVEL``; it is a warning, the run is kept.

    Args:
        metric: the task's main metric.
        first: the first evaluation during training (``step``, ``epoch`` and the value of ``metric``),
            None when the run evaluated nothing.
        final: the reported dev value of ``metric``.
        split: the examples the first evaluation ran on (``dev`` or ``selection_split``).

    Returns:
        ``{"suspected": bool, "metric", "first_value", "first_step", "first_epoch", "final_value",
        "level", "split"}``.
    """
    value = None if first is None else first.get(metric)
    suspected = value is not None and final is not None and min(value, final) >= LEAK_LEVEL
    return {
        "suspected": suspected,
        "metric": metric,
        "first_value": value,
        "first_step": None if first is None else first.get("step"),
        "first_epoch": None if first is None else first.get("epoch"),
        "final_value": final,
        "level": LEAK_LEVEL,
        "split": split,
    }


def leak_warning(check: dict[str, Any]) -> str | None:
    """The printed line for a suspected leak (see :func:`leak_check`), or None."""
    if not check.get("suspected"):
        return None
    metric, split = check["metric"], check["split"].replace("_", " ")
    return (
        f"{metric} {format_metric(metric, check['first_value'])} on {split} at the first evaluation (epoch "
        f"{check['first_epoch']:g}) and {format_metric(metric, check['final_value'])} on dev: near-perfect from the "
        "start, which leaked labels explain better than learning; check that the text does not contain the label "
        "and that dev does not repeat training examples"
    )
