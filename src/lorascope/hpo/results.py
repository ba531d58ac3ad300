"""The outputs of a search: ``hpo.json`` (every trial) and ``best_config.yaml`` (the winner)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from lorascope.artifacts import atomic_write
from lorascope.hpo.config import HpoConfig
from lorascope.hpo.record import HpoRecord
from lorascope.hpo.space import Fixed
from lorascope.hpo.storage import masked, trial_record
from lorascope.train.config import TrainConfig

HPO_FILE = HpoRecord.FILE
BEST_FILE = "best_config.yaml"


def trial_settings(cfg: HpoConfig, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Every searched setting of a finished trial: Optuna records only the sampled ones."""
    fixed = {name: p.value for name, p in cfg.search_space().params.items() if isinstance(p, Fixed)}
    return {**fixed, **trial.params}


def best_train_config(cfg: HpoConfig, trial: optuna.trial.FrozenTrial) -> TrainConfig:
    """The best trial's full training config, ready for production runs.

    Trials never save a model; ``save_model`` goes back to the base setting because this config is
    meant to be reused by runs that do.
    """
    trial_cfg = cfg.trial_config(trial_settings(cfg, trial))
    return trial_cfg.model_copy(update={"save_model": cfg.base_train().save_model})


def write_results(cfg: HpoConfig, study: optuna.Study, out_dir: Path, main_metric: str, storage_url: str) -> HpoRecord:
    """Write ``hpo.json`` and, once a trial has completed, ``best_config.yaml``; returns the record written."""
    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    best = study.best_trial if states["complete"] else None
    summary: dict[str, Any] = {
        "study": study.study_name,
        "storage": masked(storage_url),
        "task": cfg.task,
        "method": cfg.method,
        "model": cfg.model,
        "main_metric": main_metric,
        "n_trials": cfg.n_trials,
        "seed": cfg.seed,
        "counts": {k: v for k, v in states.items() if v},
        "space": cfg.search_space().to_dict(),
        "train": cfg.train,
        "best": None,
        "best_config": None,
        "trials": [trial_record(t) for t in trials],
    }
    if best is not None:
        path = out_dir / BEST_FILE
        _write_best(cfg, best, path, main_metric, study.study_name, states)
        summary["best"] = {"number": best.number, "value": best.value, "params": trial_settings(cfg, best)}
        summary["best_config"] = str(path)
    record = HpoRecord.create(**summary)
    record.write(out_dir)
    return record


def _write_best(cfg: HpoConfig, best: optuna.trial.FrozenTrial, path: Path, main_metric: str, study_name: str, states: dict[str, int]) -> None:
    train_cfg = best_train_config(cfg, best)
    space = cfg.search_space().params
    finished = states["complete"] + states["pruned"]
    header = [
        f"# Best configuration of hyperparameter search '{study_name}' (written by `lorascope hpo`).",
        f"# trial {best.number}: dev {main_metric} = {best.value!r}; best of {states['complete']} complete "
        f"trials ({finished} finished, {states['pruned']} pruned or diverged).",
        f"# searched: {', '.join(n for n, p in space.items() if not isinstance(p, Fixed)) or '-'}; "
        f"fixed: {', '.join(n for n, p in space.items() if isinstance(p, Fixed)) or '-'}",
    ]
    subsets = [k for k in ("train_limit", "eval_limit") if getattr(train_cfg, k) is not None]
    if subsets:
        # SST-2 is searched on a training subset (docs/protocol.md §2); production runs train on all of it.
        header.append(f"# {' and '.join(subsets)} are the search's data subsets: drop them for production runs.")
    body = yaml.safe_dump(train_cfg.model_dump(mode="json"), sort_keys=False)
    with atomic_write(path) as tmp:
        tmp.write_text("\n".join(header) + "\n" + body, encoding="utf-8")
