"""Where a search's trials live: an Optuna storage (SQLite file or database server) and its study.

Workers on several machines share one search by pointing at the same storage URL: they join the
same study (its name is deterministic) and Optuna hands out trial numbers atomically.

Trials left ``RUNNING`` by a killed worker are handled two ways:

- Every worker records a heartbeat for its running trial. A trial whose heartbeat is older than
  ``3 x heartbeat_s`` is marked ``FAIL`` by the next worker that looks, and rerun. This is the
  only safe rule for shared storage, where a ``RUNNING`` trial may belong to a live worker.
- The default storage, ``<out>/optuna.db``, belongs to one worker (one process per output
  folder). A ``RUNNING`` trial found there at start-up was left by a killed process, so it is
  marked ``FAIL`` at once instead of after the grace period.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState

from lorascope.config import diff_configs
from lorascope.errors import ConfigError
from lorascope.hpo.config import HpoConfig

SIGNATURE_ATTR = "lorascope_signature"
# Diverged trials are PRUNED: they used their budget slot and TPE ranks them below every
# completed trial (it ignores FAIL trials, so it would keep proposing a diverging region).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def default_storage_url(out_dir: Path) -> str:
    """The SQLite URL of ``optuna.db`` in ``out_dir`` (an absolute path)."""
    return f"sqlite:///{(out_dir / 'optuna.db').resolve()}"


def masked(url: str) -> str:
    """The storage URL with any password hidden, for messages and ``hpo.json``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy understands: print it without the part before '@'
        return url.split("@")[-1] if "@" in url else url


def _create_storage(url: str, heartbeat_s: int, attempts: int = 5) -> optuna.storages.RDBStorage:
    """``RDBStorage``, retried when workers started together race to create its tables.

    On a fresh PostgreSQL database, two workers creating Optuna's schema at the same moment make
    one of them fail with a duplicate-key error on a table or type the other just created; the
    schema exists by then, so opening again succeeds.
    """
    import time

    def create() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats are marked experimental
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=3 * heartbeat_s)

    for attempt in range(attempts - 1):
        try:
            return create()
        except Exception as exc:  # sqlalchemy's IntegrityError / ProgrammingError, told apart by message
            if "duplicate key" not in str(exc) and "already exists" not in str(exc):
                raise
            time.sleep(0.5 * (attempt + 1))
    return create()


def open_storage(url: str, heartbeat_s: int) -> optuna.storages.RDBStorage:
    """An Optuna database storage with heartbeats; a bad URL or missing driver is a ConfigError."""
    if "://" not in url:
        raise ConfigError(
            f"storage: expected a database URL such as sqlite:///path/optuna.db or postgresql://user:pw@host/db (got {url!r})"
        )
    try:
        return _create_storage(url, heartbeat_s)
    except ImportError as exc:
        hint = " (install psycopg2-binary for postgresql://)" if url.startswith("postgres") else ""
        raise ConfigError(f"storage: no database driver for {masked(url)}: {exc}{hint}") from None
    except Exception as exc:  # sqlalchemy's connection and URL errors have no common base to catch
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"storage: cannot open {masked(url)}: {first_line}") from None


def open_study(cfg: HpoConfig, storage: optuna.storages.RDBStorage) -> optuna.Study:
    """Create the study or join it; joining a study made with another space or base is an error."""
    name = cfg.resolved_study_name()
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study_name: study '{name}' in {masked(storage.url)} is not a maximisation study")
    signature = cfg.study_signature()
    stored = study.user_attrs.get(SIGNATURE_ATTR)
    if stored is None:
        study.set_user_attr(SIGNATURE_ATTR, signature)
    else:
        diffs = diff_configs(stored, signature)
        if diffs:
            raise ConfigError(
                f"study_name: study '{name}' in {masked(storage.url)} was made with other settings "
                f"({'; '.join(diffs[:3])}); use the same settings or another --storage / study_name"
            )
    return study


@dataclass(frozen=True)
class Counts:
    """How much of the trial budget is used: finished trials and trials running somewhere."""

    finished: int
    running: int


def count_trials(study: optuna.Study) -> Counts:
    """The study's finished (complete or pruned) and running trials."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return Counts(finished=len(trials) - running, running=running)


def fail_abandoned(study: optuna.Study, *, owned: bool) -> list[int]:
    """Mark trials of dead workers ``FAIL``; returns their numbers.

    Args:
        study: the study.
        owned: the storage belongs to this worker alone, so every ``RUNNING`` trial is abandoned;
            otherwise only trials whose heartbeat is older than the grace period are.
    """
    storage = study._storage  # Optuna's public API has no way to fail a trial by id from outside it
    if owned:
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for t in stale:
            storage.set_trial_user_attr(t._trial_id, "reason", "its worker stopped (found RUNNING at start-up)")
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        return [t.number for t in stale]
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if t.number in before]


def trial_record(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trial as written to ``hpo.json``."""
    attrs = t.user_attrs
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "params": t.params,
        "status": attrs.get("status"),
        "reason": attrs.get("reason"),
        "dev": attrs.get("dev"),
        "duration_s": round(t.duration.total_seconds(), 3) if t.duration else None,
        "worker": attrs.get("worker"),
        "folder": attrs.get("folder"),
    }
