"""Classification metrics on label id arrays (scikit-learn), and the Trainer's compute_metrics hook.

Every metric takes ``pred, gold: int [n]`` and the number of labels, so that a label that never
occurs in ``pred`` or ``gold`` still counts as a class (macro-F1 over the task's label set, not
over the labels that happen to appear).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, precision_recall_fscore_support

from lorascope.data.tasks import SUPPORTED_METRICS


def accuracy(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """Fraction of ``pred == gold``."""
    return float(accuracy_score(gold, pred))


def f1_binary(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """F1 of label id 1 (GLUE's MRPC convention); 0 when there are no true positives."""
    return float(f1_score(gold, pred, average="binary", pos_label=1, labels=[0, 1], zero_division=0.0))


def macro_f1(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """Unweighted mean of the per-label F1 over all ``n_labels`` labels."""
    return float(f1_score(gold, pred, average="macro", labels=list(range(n_labels)), zero_division=0.0))


def weighted_f1(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """Per-label F1 averaged with the gold label counts as weights."""
    return float(f1_score(gold, pred, average="weighted", labels=list(range(n_labels)), zero_division=0.0))


def matthews(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """Matthews correlation (multi-class form, Gorodkin 2004); 0 when undefined (constant predictions)."""
    return float(matthews_corrcoef(gold, pred))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "macro_f1": macro_f1,
    "weighted_f1": weighted_f1,
    "matthews": matthews,
}
assert tuple(METRICS) == SUPPORTED_METRICS  # one list of names: the task schema's

# Keys of the per-label and prediction statistics in a Trainer's eval log (``eval_`` is prefixed).
PER_LABEL_PREFIX = "per_label/"
PREDICTED_SHARE = "predicted_share"


def score(pred: np.ndarray, gold: np.ndarray, names: tuple[str, ...], n_labels: int) -> dict[str, float]:
    """The named metrics of ``pred`` against ``gold`` (``int [n]`` each)."""
    return {name: METRICS[name](pred, gold, n_labels) for name in names}


def per_label(pred: np.ndarray, gold: np.ndarray, label_names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Label name -> precision, recall, F1 and support (gold count), for every label of the task."""
    p, r, f, support = precision_recall_fscore_support(
        gold, pred, labels=list(range(len(label_names))), zero_division=0.0
    )
    return {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
        for i, name in enumerate(label_names)
    }


def predicted_share(pred: np.ndarray, n_labels: int) -> float:
    """The share of predictions that go to the most predicted label (1.0: constant predictions)."""
    return float(np.bincount(pred, minlength=n_labels).max() / max(pred.size, 1))


def compute_metrics_fn(names: tuple[str, ...], label_names: tuple[str, ...]) -> Callable:
    """The Trainer hook: logits ``[n, n_labels]`` and labels ``[n]`` -> the task's metrics.

    Besides the task's metrics it returns, as flat scalars (the Trainer logs only numbers),
    ``per_label/<name>/<precision|recall|f1|support>`` and ``predicted_share``;
    :func:`unflatten_eval` turns them back into a nested record.
    """

    def compute(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        pred = np.argmax(logits, axis=-1)
        out = score(pred, labels, names, len(label_names))
        for label, stats in per_label(pred, labels, label_names).items():
            for key, value in stats.items():
                out[f"{PER_LABEL_PREFIX}{label}/{key}"] = float(value)
        out[PREDICTED_SHARE] = predicted_share(pred, len(label_names))
        return out

    return compute


def unflatten_eval(log: dict[str, float], names: tuple[str, ...], label_names: tuple[str, ...]) -> dict:
    """A Trainer eval log entry -> ``{"dev": {metric: value, "loss": …}, "per_label": {…}, "predicted_share": …}``."""
    flat = {k.removeprefix("eval_"): v for k, v in log.items()}
    dev = {k: flat[k] for k in (*names, "loss") if k in flat}
    labels: dict[str, dict[str, float]] = {}
    for label in label_names:
        stats = {key: flat.get(f"{PER_LABEL_PREFIX}{label}/{key}") for key in ("precision", "recall", "f1", "support")}
        if all(v is not None for v in stats.values()):
            stats["support"] = int(stats["support"])
            labels[label] = stats
    return {"dev": dev, "per_label": labels, "predicted_share": flat.get(PREDICTED_SHARE)}
