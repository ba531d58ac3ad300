"""Majority-class and uniform-random baselines on the dev sets, scored with each task's metrics.

A study evaluates its runs on a deterministic dev subset (``eval_limit``, ``data_seed``); its
baselines are scored on that same subset, so "vs majority" compares like with like.
"""

from __future__ import annotations

import numpy as np

from lorascope.data import get_task, load_split, subsample, with_label_set
from lorascope.metrics import score
from lorascope.records import Baseline
from lorascope.train.learned import majority_label


def run_baselines(
    tasks: list[str],
    data_dir: str | None = None,
    draws: int = 1000,
    seed: int = 0,
    eval_limits: dict[str, int | None] | None = None,
    data_seed: int = 0,
) -> list[Baseline]:
    """Majority class of the *training* labels predicted for every dev row, and ``draws``
    uniformly random prediction vectors (mean and sd of each metric over draws).

    ``eval_limits`` maps a task to the dev subset size its runs use (subsampled with
    ``data_seed`` exactly as training does); a task not in it is scored on the whole dev split.
    """
    results = []
    for name in tasks:
        spec = with_label_set(get_task(name), data_dir)
        train_labels = np.asarray(load_split(spec, "train", data_dir)["label"])
        dev = subsample(load_split(spec, "validation", data_dir), (eval_limits or {}).get(name), data_seed)
        gold = np.asarray(dev["label"])
        majority = majority_label(train_labels, spec.num_labels)
        rng = np.random.default_rng(seed)
        random_scores = [score(rng.integers(0, spec.num_labels, gold.size), gold, spec.metrics, spec.num_labels) for _ in range(draws)]
        results.append(
            Baseline(
                task=spec.name,
                n_dev=int(gold.size),
                majority_label=spec.label_names[majority],
                majority=score(np.full_like(gold, majority), gold, spec.metrics, spec.num_labels),
                random_mean={m: float(np.mean([s[m] for s in random_scores])) for m in spec.metrics},
                random_sd={m: float(np.std([s[m] for s in random_scores], ddof=1)) for m in spec.metrics},
                random_draws=draws,
            )
        )
    return results
