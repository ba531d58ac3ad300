"""Classification metrics on label id arrays (scikit-learn), and the Trainer's compute_metrics hook.

Every metric takes ``pred, gold: int [n]`` and the number of labels, so that a label that never
occurs in ``pred`` or ``gold`` still counts as a class (macro-F1 over the task's label set, not
over the labels that happen to appear).

It is also where numbers are written for people (``format_*``): the report writes every number
through these (its templates' filters; a test keeps it so), and commands share them where they print
the same quantities. scikit-learn is imported by the metrics that use it, on
first call, so the formatters load without it (``lorascope --help`` imports them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lorascope.data.tasks import SUPPORTED_METRICS

if TYPE_CHECKING:  # the hook's argument type only; importing transformers is slow
    from transformers import EvalPrediction


def accuracy(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """Fraction of ``pred == gold``."""
    from sklearn.metrics import accuracy_score  # here, not at import: the number formatters below load light

    return float(accuracy_score(gold, pred))


def f1_binary(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """F1 of label id 1 (GLUE's MRPC convention); 0 when there are no true positives."""
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, average="binary", pos_label=1, labels=[0, 1], zero_division=0.0))


def macro_f1(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """Unweighted mean of the per-label F1 over all ``n_labels`` labels."""
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, average="macro", labels=list(range(n_labels)), zero_division=0.0))


def weighted_f1(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """Per-label F1 averaged with the gold label counts as weights."""
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, average="weighted", labels=list(range(n_labels)), zero_division=0.0))


def matthews(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """Matthews correlation (multi-class form, Gorodkin 2004); 0 when undefined (constant predictions)."""
    from sklearn.metrics import matthews_corrcoef

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
    from sklearn.metrics import precision_recall_fscore_support

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


def compute_metrics_fn(names: tuple[str, ...], label_names: tuple[str, ...]
                       ) -> Callable[[EvalPrediction], dict[str, float]]:
    """The Trainer hook: logits ``[n, n_labels]`` and labels ``[n]`` -> the task's metrics.

    Besides the task's metrics it returns, as flat scalars (the Trainer logs only numbers),
    ``per_label/<name>/<precision|recall|f1|support>`` and ``predicted_share``;
    :func:`unflatten_eval` turns them back into a nested record.
    """

    def compute(eval_pred: EvalPrediction) -> dict[str, float]:
        logits, labels = eval_pred.predictions, np.asarray(eval_pred.label_ids)
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


def unflatten_eval(log: dict[str, float], names: tuple[str, ...], label_names: tuple[str, ...]) -> dict[str, Any]:
    """A Trainer eval log entry -> ``{"dev": {metric: value, "loss": …}, "per_label": {…}, "predicted_share": …}``."""
    flat = {k.removeprefix("eval_"): v for k, v in log.items()}
    dev = {k: flat[k] for k in (*names, "loss") if k in flat}
    labels: dict[str, dict[str, float]] = {}
    for label in label_names:
        stats: dict[str, float] = {}
        for key in ("precision", "recall", "f1", "support"):
            value = flat.get(f"{PER_LABEL_PREFIX}{label}/{key}")
            if value is None:
                break
            stats[key] = int(value) if key == "support" else value
        else:
            labels[label] = stats
    return {"dev": dev, "per_label": labels, "predicted_share": flat.get(PREDICTED_SHARE)}


# --- How metrics are written for people: the one place every command and the report format them. ---

# Metrics that are shares (of examples, or means of per-label shares) read as percentages. Matthews
# correlation is a correlation on −1..1: written as "16.4%" it would pass for a share of examples,
# so it keeps its own scale.
PERCENT_METRICS = frozenset({"accuracy", "f1", "macro_f1", "weighted_f1"})
assert PERCENT_METRICS < set(METRICS)


# How sentences name a metric; tables keep the names a task file uses.
METRIC_NAMES = {"accuracy": "accuracy", "f1": "F1", "macro_f1": "macro-F1", "weighted_f1": "weighted F1",
                "matthews": "MCC"}
assert set(METRIC_NAMES) == set(METRICS)


def metric_name(metric: str | None) -> str:
    """A metric as a sentence names it: ``matthews`` -> ``MCC``; None -> ``metric``."""
    return METRIC_NAMES.get(metric or "", metric or "metric")


def is_percentage(metric: str | None) -> bool:
    """Whether ``metric`` is written as a percentage; an unknown metric (None) is, as shares are the common case."""
    return metric is None or metric in PERCENT_METRICS


def format_metric(metric: str | None, value: float | None, sd: float | None = None) -> str:
    """A metric value as people read it: accuracy 0.912 -> ``91.2%``, Matthews 0.164 -> ``0.164``.

    With ``sd``: ``91.2 ± 1.1%`` and ``0.164 ± 0.020``. None (no value) -> ``–``.
    """
    if value is None or value != value:  # NaN: an undefined metric, not a number to print
        return "–"
    if is_percentage(metric):
        spread = f" ± {100 * sd:.1f}" if sd is not None else ""
        return f"{100 * value:.1f}{spread}%"
    return f"{value:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")


def format_metric_difference(metric: str | None, delta: float | None, signed: bool = True) -> str:
    """A difference of two values of ``metric``: ``+3.2 points`` for a percentage, ``+0.032`` for Matthews.

    ``signed=False`` writes the size alone (``3.2 points``), for sentences that say the direction in words.
    """
    if delta is None or delta != delta:
        return "–"
    sign = "+" if signed else ""
    if is_percentage(metric):
        return f"{100 * (delta if signed else abs(delta)):{sign}.1f} points"
    return f"{delta if signed else abs(delta):{sign}.3f}"


def format_count(value: float | int | None) -> str:
    """A count (label support, examples): ``12``, never ``12.0`` (JSON and pydantic may hand it back as a float)."""
    return "–" if value is None else str(int(round(value)))


def versus_majority(metric: str | None, value: float, majority: float, margin: float | None = None) -> str:
    """Where a main-metric value stands against the majority-class baseline, in words.

    A value below the baseline is said to be below it, and by how much: a model that does worse than
    always answering the most frequent label learned something misleading, which "not 2 points above"
    would hide. ``margin`` (a fraction, e.g. 0.02) adds, for a value above the baseline by less, that it
    falls short of that margin. E.g. ``below the majority baseline (0.000) by 0.215``, ``at the majority
    baseline (53.0%)``, ``0.6 points above the majority baseline (53.0%), less than the 2.0-point margin``.
    """
    base = f"the majority baseline ({format_metric(metric, majority)})"
    gap = value - majority
    if gap < 0:
        return f"below {base} by {format_metric_difference(metric, gap, signed=False)}"
    if gap == 0:
        return f"at {base}"
    said = f"{format_metric_difference(metric, gap, signed=False)} above {base}"
    if margin is not None and gap < margin:
        said += f", less than the {format_metric_difference(metric, margin, signed=False).replace(' points', '-point')} margin"
    return said


# --- Statistics as the report writes them (p-values, ratios, reductions), formatted here too. ---


def _significant(value: float) -> str:
    """3 significant digits, trailing zeros kept (``0.120``, ``2.50``, ``150``)."""
    return f"{value:#.3g}".rstrip(".").replace(".e", "e")


def format_p(p: float | None) -> str:
    """An exact p-value to 3 significant digits (``0.0123``, ``1.81e-10``); ``undefined`` without one (None, NaN)."""
    return "undefined" if p is None or p != p else f"{p:.3g}"


def format_ratio(ratio: float | None) -> str:
    """A ratio of two positive quantities (e.g. the geometric-mean drift ratio) to 3 significant digits."""
    return "–" if ratio is None or ratio != ratio else _significant(ratio)


def format_drift(value: float | None) -> str:
    """A drift (1 − CKA) to 3 significant digits: drifts span orders of magnitude (0.004 to 0.9)."""
    return "–" if value is None or value != value else _significant(value)


def format_reduction(percent: float | None) -> str:
    """A relative reduction Δ% to one decimal: ``80.9%``, ``-150.0%`` (an increase)."""
    return "–" if percent is None or percent != percent else f"{percent:.1f}%"


def format_bounds(bounds: Sequence[float | None] | None, fmt: Callable[[float | None], str] = format_ratio) -> str:
    """An interval ``[low, high]`` (a pair, as JSON stores it) with each bound written by ``fmt``;
    ``unbounded`` where a bound is undefined (None, NaN) or the pair is missing."""
    low, high = tuple(bounds or (None, None))[:2]
    if low is None or high is None or low != low or high != high:
        return "unbounded"
    return f"[{fmt(low)}, {fmt(high)}]"


def format_number(x: float | None, digits: int = 3, signed: bool = False) -> str:
    """``x`` with ``digits`` decimals (``+`` before a positive one where ``signed``), or ``–`` for None or NaN."""
    return "–" if x is None or x != x else f"{x:{'+' if signed else ''}.{digits}f}"


def format_significant(x: float | None, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits, trailing zeros dropped (``0.0123``, ``1.5e-05``, ``150``), or ``–``
    for None or NaN. Six digits is how Python writes a number with ``g`` (a setting such as ``2e-05`` or ``0.1``)."""
    return "–" if x is None or x != x else f"{x:.{digits}g}"


def format_scientific(x: float | None, digits: int = 2) -> str:
    """``x`` in scientific notation with ``digits`` decimals (``3.10e-07``; ``1e-04`` for 0), or ``–`` for None or NaN."""
    return "–" if x is None or x != x else f"{x:.{digits}e}"


def format_share(x: float | None, digits: int = 0) -> str:
    """A share (a fraction of 1) as a percentage with ``digits`` decimals: 0.95 -> ``95%``, 0.9123 -> ``91.2%`` at
    ``digits=1``; ``–`` for None or NaN."""
    return "–" if x is None or x != x else f"{x:.{digits}%}"


def format_interval(low: float | None, high: float | None, digits: int = 3, unit: str = "") -> str:
    """``[a, b]`` with ``digits`` decimals and ``unit`` after each bound; ``unbounded`` where a bound is undefined."""
    return format_bounds((low, high), fmt=lambda x: f"{x:.{digits}f}{unit}")


def format_reduction_interval(low: float | None, high: float | None) -> str:
    """A Δ% interval with its upper bound capped at 100%: drift is never negative, so LoRA cannot
    drift more than 100% less; a symmetric interval can overshoot that bound, which says nothing."""
    if low is None or high is None:
        return "unbounded"
    capped = " (capped at 100%)" if high > 100 else ""
    return f"[{low:.1f}%, {min(high, 100.0):.1f}%]{capped}"
