"""``run_hpo``: an Optuna TPE search for one (task, method, model), resumable and shareable.

Reads top to bottom: validate everything -> open (or join) the study -> fail trials of dead
workers -> run trials until the study has ``n_trials`` finished ones -> write ``hpo.json`` and
``best_config.yaml``.

``n_trials`` is the size of the whole study, not of one call: a rerun after an interruption runs
only the missing trials, and several workers sharing one storage stop together once the study
holds ``n_trials`` finished (complete or pruned) trials. Failed trials (a crash, a killed
worker) do not count and are replaced.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from lorascope.artifacts import check_output_path, partial_path
from lorascope.data.tasks import get_task
from lorascope.hpo.config import HpoConfig
from lorascope.hpo.record import HpoRecord
from lorascope.hpo.results import write_results
from lorascope.hpo.space import SearchSpace
from lorascope.hpo.storage import FINISHED, count_trials, default_storage_url, fail_abandoned, open_storage, open_study
from lorascope.metrics import format_metric
from lorascope.models.registry import resolve_model
from lorascope.run_folder import RunRecord
from lorascope.train.run import load_task_data, run_train

TRIALS_DIR = "trials"


class SurplusTrial(Exception):
    """A trial started after the study's budget was already taken by other workers."""


def run_hpo(cfg: HpoConfig, out_dir: Path | str, *, log: Callable[[str], None] | None = None) -> HpoRecord:
    """Search the hyperparameters of ``cfg`` until its study holds ``cfg.n_trials`` finished trials.

    Args:
        cfg: the search.
        out_dir: this worker's folder: ``trials/trial-<n>`` run folders, ``hpo.json``,
            ``best_config.yaml`` and, without ``cfg.storage``, the study's ``optuna.db``.
        log: called with one line per event (trial finished, worker waiting); silent if None.

    Returns:
        The :class:`~lorascope.hpo.record.HpoRecord` written as ``hpo.json``: every trial of the study
        (from all workers) and the best.

    Raises:
        ConfigError: invalid space, training settings, task, model or storage, or a study of the
            same name made with other settings. Nothing is run or written in that case.
    """
    log = log or (lambda _msg: None)
    out_dir = Path(out_dir)
    check_output_path(out_dir)
    space = cfg.search_space()
    base = cfg.base_train()
    resolve_model(cfg.model)
    main_metric = get_task(cfg.task).main_metric
    # Bad data found inside a trial would end the search after its storage and folder exist.
    load_task_data(base)

    url = cfg.storage or default_storage_url(out_dir)
    if cfg.storage is None:
        out_dir.mkdir(parents=True, exist_ok=True)  # the SQLite file lives there
    study = open_study(cfg, open_storage(url, cfg.heartbeat_s))
    out_dir.mkdir(parents=True, exist_ok=True)
    abandoned = fail_abandoned(study, owned=cfg.storage is None)
    if abandoned:
        log(f"marked trial(s) {', '.join(map(str, abandoned))} failed: their worker stopped; they will be replaced")
    trials_dir = out_dir / TRIALS_DIR
    _remove_dead_partials(study, trials_dir)

    objective = _Objective(cfg, space, trials_dir, main_metric, log)
    try:
        while True:
            counts = count_trials(study)
            if counts.finished >= cfg.n_trials:
                break
            if counts.finished + counts.running >= cfg.n_trials:
                # The remaining budget is held by trials running elsewhere: wait for them to finish,
                # or to go stale, in which case they are failed here and their slots reopen.
                log(f"{counts.finished}/{cfg.n_trials} finished; waiting for {counts.running} trial(s) of other workers")
                time.sleep(cfg.heartbeat_s)
                fail_abandoned(study, owned=False)
                continue
            with _quiet_optuna():
                study.optimize(objective, n_trials=1, catch=(SurplusTrial,), gc_after_trial=True)
    finally:
        summary = write_results(cfg, study, out_dir, main_metric, url)
    return summary


class _Objective:
    """One trial: sample settings, train with them, return the main dev metric."""

    def __init__(self, cfg: HpoConfig, space: SearchSpace, trials_dir: Path, main_metric: str, log: Callable[[str], None]):
        self.cfg, self.space, self.trials_dir, self.main_metric, self.log = cfg, space, trials_dir, main_metric, log

    def __call__(self, trial: optuna.Trial) -> float:
        # A sampler seeded once per process would repeat its random start-up suggestions after a
        # resume and in every worker; seeding by trial number keeps the search reproducible
        # (same seed and history -> same suggestions) without duplicates.
        trial.study.sampler = optuna.samplers.TPESampler(seed=trial_seed(self.cfg.seed, trial.number))
        if _over_budget(trial, self.cfg.n_trials):
            trial.set_user_attr("reason", "surplus: the budget was taken by other workers")
            raise SurplusTrial(f"trial {trial.number}: the study already has {self.cfg.n_trials} trials")
        settings = self.space.suggest(trial)
        folder = self.trials_dir / f"trial-{trial.number}"
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("folder", str(folder.resolve()))
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in trial.params.items())

        record = self._train(trial, settings, folder)
        trial.set_user_attr("status", record.status)
        trial.set_user_attr("reason", record.reason)
        trial.set_user_attr("dev", record.dev)
        value = (record.dev or {}).get(self.main_metric)
        if not record.ok or value is None or not math.isfinite(value):
            reason = record.reason or f"no finite dev {self.main_metric}"
            self.log(f"trial {trial.number} failed ({reason}); recorded as pruned | {shown}")
            raise optuna.TrialPruned(reason)
        self.log(f"trial {trial.number}: dev {self.main_metric} {format_metric(self.main_metric, value)} | {shown} | {record.runtime_s or 0:.1f} s")
        return float(value)

    def _train(self, trial: optuna.Trial, settings: dict[str, Any], folder: Path) -> RunRecord:
        import torch

        try:
            record = run_train(self.cfg.trial_config(settings), folder, progress=False)
            return record if record is not None else RunRecord(status="failed", reason="not the main process")
        except torch.OutOfMemoryError:
            # A configuration that does not fit this device is a bad configuration, not a crash.
            shutil.rmtree(partial_path(folder), ignore_errors=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return RunRecord(status="failed", reason="out of memory")


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence optuna's own per-trial warnings while a trial runs.

    The objective logs every finished or pruned trial itself; optuna would add a warning with a
    full traceback for a failed one, even for bad input that the command then reports on one
    line. An exception that ends the search still propagates (with its traceback if it is a bug).
    """
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(level, optuna.logging.ERROR))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number``: independent streams per trial from one search seed."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _over_budget(trial: optuna.Trial, n_trials: int) -> bool:
    """Whether ``n_trials`` earlier trials are finished or running, i.e. another worker won the race.

    Workers check the budget before starting a trial, but two can check at the same moment;
    the lower trial numbers win.
    """
    earlier = trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    return sum(t.number < trial.number for t in earlier) >= n_trials


def _remove_dead_partials(study: optuna.Study, trials_dir: Path) -> None:
    """Delete half-written run folders of trials that no longer run (checkpoints can be large)."""
    if not trials_dir.is_dir():
        return
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    for folder in trials_dir.glob("trial-*.partial"):
        number = folder.name.removeprefix("trial-").removesuffix(".partial")
        if number.isdigit() and int(number) not in running:
            shutil.rmtree(folder, ignore_errors=True)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
