"""Which examples and which number choose the checkpoint a run keeps.

The Trainer evaluates a run every ``1 / evals_per_epoch`` epochs, keeps the checkpoint with the
best value of ``select_by`` and stops early when it stops improving. By default dev does both
jobs: it chooses the checkpoint and then reports that checkpoint's score, which is then the
best of several tries on the same examples. ``selection_split`` holds out part of the training
data to choose on instead, and dev scores only the final model.
"""

from __future__ import annotations

import datasets
import numpy as np
from sklearn.model_selection import train_test_split

from lorascope.data.tasks import TaskSpec
from lorascope.errors import ConfigError
from lorascope.train.config import TrainConfig

DEV = "dev"
SELECTION_SPLIT = "selection_split"


def selection_metric(cfg: TrainConfig, spec: TaskSpec) -> str:
    """The evaluation key (without ``eval_``) that chooses the checkpoint: ``loss`` or the task's main metric."""
    return "loss" if cfg.select_by == "loss" else spec.main_metric


def split_for_selection(
    train: datasets.Dataset, fraction: float | None, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """(rows to train on, rows that choose the checkpoint): a seeded, label-stratified hold-out of ``train``.

    Stratified so that a rare label is in both parts in its training proportion (an imbalanced
    task's selection rows must contain the minority label for a metric to reward predicting it).
    Both parts keep file order, as ``subsample`` does.

    Args:
        train: the uniform training split (``label`` column), already subsampled.
        fraction: share of ``train`` to hold out (rounded up); None holds out nothing.
        seed: the draw's seed (``data_seed``: the same hold-out for every method and run seed).

    Returns:
        ``train`` unchanged and None when ``fraction`` is None.

    Raises:
        ConfigError: when the hold-out or the rest cannot contain every label, naming ``selection_split``.
    """
    if fraction is None:
        return train, None
    labels = np.asarray(train["label"])
    try:
        kept, held = train_test_split(np.arange(len(train)), test_size=fraction, random_state=seed, stratify=labels)
    except ValueError as exc:
        # sklearn refuses a label with a single example, or a part smaller than the number of labels.
        raise ConfigError(f"selection_split: cannot hold out {fraction:g} of {len(train)} training examples "
                          f"with every label on both sides ({exc})") from None
    return train.select(np.sort(kept).tolist()), train.select(np.sort(held).tolist())
