"""Classification metrics on label id arrays (numpy), and the Trainer's compute_metrics hook."""

from __future__ import annotations

from typing import Callable

import numpy as np


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    """Fraction of ``pred == gold``; ``pred, gold: int [n]``."""
    return float(np.mean(pred == gold))


def f1_binary(pred: np.ndarray, gold: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class (GLUE MRPC convention); 0 when there are no true positives."""
    tp = float(np.sum((pred == positive) & (gold == positive)))
    fp = float(np.sum((pred == positive) & (gold != positive)))
    fn = float(np.sum((pred != positive) & (gold == positive)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation (multi-class form, Gorodkin 2004); 0 when undefined."""
    labels = np.union1d(pred, gold)
    c = np.zeros((labels.size, labels.size))
    for i, g in enumerate(labels):
        for j, p in enumerate(labels):
            c[i, j] = np.sum((gold == g) & (pred == p))
    t, p_ = c.sum(1), c.sum(0)
    n, correct = c.sum(), np.trace(c)
    denom = np.sqrt((n**2 - p_ @ p_) * (n**2 - t @ t))
    return 0.0 if denom == 0 else float((correct * n - t @ p_) / denom)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "matthews": matthews,
}


def score(pred: np.ndarray, gold: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    return {name: METRICS[name](pred, gold) for name in names}


def compute_metrics_fn(names: tuple[str, ...]) -> Callable:
    """The Trainer hook: logits ``[n, n_labels]`` and labels ``[n]`` -> the task's metrics."""

    def compute(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        return score(np.argmax(logits, axis=-1), labels, names)

    return compute
