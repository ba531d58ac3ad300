"""Per-example scores for a metric that is not a mean over examples (F1, Matthews correlation).

The seeds × dev-examples analysis (``lorascope.stats.crossed``) needs each run's metric written as a
mean of per-example scores. Accuracy is one (the 0/1 correctness of each example); F1 and Matthews
correlation are not. Their jackknife pseudo-values are (Quenouille 1956; Efron & Stein 1981):

    p_j = n · M(all) − (n − 1) · M(all but example j)

whose mean is the jackknife estimate of M and whose variance over examples, divided by n, is the
jackknife estimate of M's variance over the dev set — the per-example share the crossed analysis
needs. The pseudo-values are shifted by a constant so that their mean is M itself (the reported
metric): a constant shift changes no variance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def pseudo_values(metric: Callable[[np.ndarray, np.ndarray, int], float], pred: np.ndarray, gold: np.ndarray,
                  n_labels: int) -> np.ndarray:
    """Jackknife pseudo-values of ``metric`` over examples, centred on the metric of all examples.

    Args:
        metric: ``metric(pred, gold, n_labels) -> float`` (one of ``lorascope.metrics.METRICS``).
        pred, gold: int arrays [n], predicted and gold label ids of the same examples.
        n_labels: the task's number of labels.

    Returns:
        float array [n] whose mean is ``metric(pred, gold)``; for accuracy, each example's 0/1
        correctness exactly.
    """
    pred, gold = np.asarray(pred), np.asarray(gold)
    n = pred.shape[0]
    whole = metric(pred, gold, n_labels)
    keep = np.ones(n, dtype=bool)
    left_out = np.empty(n)
    for j in range(n):
        keep[j] = False
        left_out[j] = metric(pred[keep], gold[keep], n_labels)
        keep[j] = True
    values = n * whole - (n - 1) * left_out
    return np.asarray(values - values.mean() + whole, dtype=float)
