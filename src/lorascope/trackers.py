"""A study's results, sent to the experiment trackers its training curves go to (``report_to``).

The Trainer logs each run's training curves to the trackers ``report_to`` names; the study's
results (verdicts, drift by layer, the lenses, serving cost) exist only after training, in the
study folder. :func:`log_study_results` reads them from the saved artifacts (never the models,
through :func:`lorascope.report.collect.collect`, the report's own reader) and logs them to the
same trackers, once at the end of a study run:

- **MLflow** (``mlflow``): one run per study folder, named after the study, in the store MLflow
  itself resolves (``MLFLOW_TRACKING_URI``, else MLflow's default local store) and the experiment
  ``MLFLOW_EXPERIMENT_NAME`` (else the default one): the same place the Trainer's MLflow callback
  puts the training curves. A rerun whose results are unchanged logs nothing; changed results
  (a resumed study that added a stage) go to a new run, and the earlier one is tagged
  ``lorascope.superseded_by`` (kept, never deleted).
- **TensorBoard** (``tensorboard``): event files under ``<study>/tensorboard/``, rewritten on every
  run (``tensorboard --logdir <study>/tensorboard``); scalars, the per-layer and per-batch-size series
  with that as their step, and the statuses as text.
- **Weights & Biases** (``wandb``): an offline run under ``<study>/wandb/`` (``wandb sync`` uploads
  it): summary values, and the per-layer and per-batch-size series against their own step metric.

Other integrations of the Trainer (comet_ml, clearml, ...) get the training curves only.

What is logged, the same for every tracker (:func:`study_results`); ``<m>`` is a method label,
``<key>`` a verdict's key in drift.json (``h1a``, ``h1b``, ``lower``, ...):

- ``metric/<task>/<m>``: mean dev main metric over the method's finished runs.
- ``verdict/<task>/<key>/{estimate, ci_low, ci_high, p_raw, p_adjusted, secondary_p_raw,
  secondary_p_adjusted}``, and the tags ``verdict/<task>/<key>/{status, secondary_status,
  hypothesis}``; for a task whose models did not learn it, the status tag says so and no number
  is logged (as the report does).
- ``drift_by_layer/<task>/<m>``: a series, step = layer (0 = embeddings), value = mean drift over
  seeds; ``drift/<task>/<m>/{mean, debiased_mean}``; ``drift/<task>/{reduction_percent,
  reduction_percent_debiased}``.
- ``<lens>/<task>/<measure>/<m>``: the mean over seeds of each measure a lens compares
  (``weights``, ``forgetting``, ``probes``).
- ``serving/<strategy>/{ratio_to_merged, mean_ms}``: series, step = batch size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lorascope.errors import LorascopeError
from lorascope.extras import require

if TYPE_CHECKING:
    from lorascope.drift.record import DriftRecord
    from lorascope.lenses.records import ForgettingRecord, LensRun, ProbesRecord, WeightRun, WeightsRecord
    from lorascope.report.collect import StudyRecords

# The trackers a study's results can go to, in the order they are logged.
SUPPORTED = ("mlflow", "tensorboard", "wandb")
# Tracker -> (the extra that installs it, the module it needs).
_NEEDS = {"mlflow": ("trackers", "mlflow"), "tensorboard": ("trackers", "tensorboard"), "wandb": ("wandb", "wandb")}
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
# Tags of the MLflow run that identify a study's results.
FOLDER_TAG, DIGEST_TAG, SUPERSEDED_TAG = "lorascope.study_folder", "lorascope.results_digest", "lorascope.superseded_by"
# What the tag of a verdict says instead of its status where the models did not learn the task.
NOT_LEARNED = "not reported (did not learn)"


class TrackerError(LorascopeError):
    """Logging the study's results to a tracker failed; the results themselves are in the study folder."""


@dataclass
class StudyResults:
    """A study's results as trackers take them.

    Attributes:
        name: the study's name (the MLflow run name).
        folder: the study folder, resolved.
        params: setting -> value, as strings (what the study was).
        tags: name -> text (verdict statuses, which tasks were learned).
        series: metric name -> ``[(step, value)]``; step 0 for a single number, the layer or the
            batch size for a series.
    """

    name: str
    folder: Path
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def add(self, name: str, value: Any, step: int = 0) -> None:
        """Add one number (skipped when missing or not finite: nothing to plot)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return
        self.series.setdefault(key(name), []).append((int(step), float(value)))

    def digest(self) -> str:
        """A hash of everything logged: equal for equal results, whatever order they were read in."""
        body = json.dumps({"params": self.params, "tags": self.tags,
                           "series": {k: sorted(v) for k, v in self.series.items()}}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()


def key(name: str) -> str:
    """A metric or tag name every tracker accepts: letters, digits and ``_-./`` (anything else becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9_\-./]", "_", name)


def trackers_of(report_to: str | Iterable[str]) -> list[str]:
    """The trackers of :data:`SUPPORTED` that ``report_to`` names, in that order: ``"all"`` names
    those installed here (as the Trainer's ``all`` does), ``"none"`` none; other loggers are left out."""
    names = {report_to} if isinstance(report_to, str) else set(report_to)
    if "all" in names:
        from lorascope.extras import missing_modules

        return [t for t in SUPPORTED if not missing_modules(_NEEDS[t][1])]
    return [t for t in SUPPORTED if t in names]


def study_report_to(cfg: Any) -> list[str]:
    """Every logger the units of a study config (:class:`~lorascope.study.config.StudyConfig`)
    report to: ``report_to`` may differ per method or task."""
    names: set[str] = set()
    for task in cfg.tasks:
        for method in cfg.methods:
            value = cfg.train_config(task, method, cfg.seeds[0]).report_to
            names |= {value} if isinstance(value, str) else set(value)
    return sorted(names - {"none"})


def study_results(study: Path | str) -> StudyResults:
    """Read a study folder's results (see the module docstring for the names)."""
    from lorascope.report.collect import LENS_STAGES, collect
    from lorascope.report.learning import main_metric, task_learning

    study = Path(study).resolve()
    data = collect(study)
    cfg = data.config

    def joined(name: str) -> str:
        value = cfg.get(name)
        return ",".join(map(str, value)) if isinstance(value, list) else ""

    out = StudyResults(name=str(cfg.get("name") or study.name), folder=study)
    out.params = {"study": out.name, "study_folder": str(study), "model": str(cfg.get("model")),
                  "tasks": joined("tasks"), "methods": joined("methods"), "seeds": joined("seeds")}
    _task_metrics(out, data, main_metric)
    for task, d in data.drift.items():
        learned = task_learning(data, task).learned
        out.tags[key(f"task/{task}/learned")] = "true" if learned else "false"
        _verdicts(out, task, d, learned)
        _drift(out, task, d)
    for lens in LENS_STAGES:
        for task, result in data.lens(lens).items():
            _lens(out, lens, task, result)
    for row in data.bench.results if data.bench else []:
        out.add(f"serving/{row.strategy}/ratio_to_merged", row.ratio_to_merged, row.batch_size)
        out.add(f"serving/{row.strategy}/mean_ms", row.mean_ms, row.batch_size)
    for series in out.series.values():
        series.sort()
    return out


def _task_metrics(out: StudyResults, data: StudyRecords, main_metric: Callable[[StudyRecords, str], str | None]) -> None:
    by: dict[tuple[str, str], list[float]] = {}
    for run in data.runs:
        r, task = run.record, str(run.record.task)
        metric = r.main_metric or main_metric(data, task)
        value = (r.dev or {}).get(metric or "") if r.ok else None
        if value is not None:
            by.setdefault((task, run.label), []).append(float(value))
    for (task, method), values in sorted(by.items()):
        out.add(f"metric/{task}/{method}", float(np.mean(values)))


def _verdicts(out: StudyResults, task: str, d: DriftRecord, learned: bool) -> None:
    from lorascope.drift.record import StoredVerdict

    for name, v in sorted(d.comparison.verdicts.items()):
        if not isinstance(v, StoredVerdict):
            continue
        prefix = f"verdict/{task}/{name}"
        out.tags[key(f"{prefix}/hypothesis")] = v.hypothesis
        if not learned:
            out.tags[key(f"{prefix}/status")] = NOT_LEARNED
            continue
        out.tags[key(f"{prefix}/status")] = v.status
        if v.secondary_status:
            out.tags[key(f"{prefix}/secondary_status")] = v.secondary_status
        for metric, value in (("estimate", v.estimate), ("ci_low", v.ci_low), ("ci_high", v.ci_high),
                              ("p_raw", v.p_value), ("p_adjusted", v.p_adjusted),
                              ("secondary_p_raw", v.secondary.p_value if v.secondary else None),
                              ("secondary_p_adjusted", v.secondary_p_adjusted)):
            out.add(f"{prefix}/{metric}", value)


def _drift(out: StudyResults, task: str, d: DriftRecord) -> None:
    for method, s in d.methods.items():
        for layer, value in enumerate(s.layer_drift_mean):
            out.add(f"drift_by_layer/{task}/{method}", value, layer)
        out.add(f"drift/{task}/{method}/mean", s.drift.mean)
        out.add(f"drift/{task}/{method}/debiased_mean", s.drift_debiased.mean)
    out.add(f"drift/{task}/reduction_percent", d.comparison.reduction_percent)
    out.add(f"drift/{task}/reduction_percent_debiased", d.comparison.reduction_percent_debiased)


def lens_means(result: WeightsRecord | ForgettingRecord | ProbesRecord) -> dict[tuple[str, str], float]:
    """``(measure, method) -> mean over the method's runs`` of each measure a lens's comparison
    holds, from its runs' summaries (every method, not only the compared pair)."""
    from lorascope.report.tables import lens_values

    runs: list[LensRun | WeightRun] = list(result.runs)
    return {k: float(np.mean(v)) for k, v in lens_values(result.comparison.measures, runs).items()}


def _lens(out: StudyResults, lens: str, task: str, result: WeightsRecord | ForgettingRecord | ProbesRecord) -> None:
    for (measure, method), mean in sorted(lens_means(result).items()):
        out.add(f"{lens}/{task}/{measure}/{method}", mean)


def log_study_results(study: Path | str, report_to: str | Iterable[str], *, console: Any = None,
                      mlflow_tracking_uri: str | None = None) -> dict[str, str]:
    """Log a study's results to the trackers ``report_to`` names (see the module docstring).

    Args:
        study: the study folder.
        report_to: ``none``, ``all``, a logger's name or a list of them (``TrainConfig.report_to``).
        console: a rich console for one line per tracker (none: quiet).
        mlflow_tracking_uri: the MLflow store; default: MLflow's own (``MLFLOW_TRACKING_URI``, else its
            default local store).

    Returns:
        tracker -> where the results went (the MLflow run id and store, a folder).

    Raises:
        MissingExtraError: a named tracker's package is not installed (``pip install 'lorascope[trackers]'``).
        TrackerError: a tracker failed (the others were logged first).
    """
    trackers = trackers_of(report_to)
    for tracker in trackers:
        require(*_NEEDS[tracker], by=f"report_to: {tracker} (the study's results)")
    if not trackers:
        return {}
    results = study_results(study)
    loggers: dict[str, Callable[[], str]] = {
        "mlflow": lambda: log_mlflow(results, mlflow_tracking_uri),
        "tensorboard": lambda: log_tensorboard(results),
        "wandb": lambda: log_wandb(results),
    }
    done, failed = {}, []
    for tracker in trackers:
        try:
            done[tracker] = loggers[tracker]()
        except Exception as exc:  # one tracker down (a server, a full disk) must not keep the others from their results
            failed.append(f"{tracker}: {exc.__class__.__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            continue
        if console is not None:
            console.print(f"study results logged to {tracker}: {done[tracker]}", highlight=False)
    if failed:
        raise TrackerError(f"the study's results could not be logged to {'; '.join(failed)} (they are in {results.folder}; "
                           "rerun the study to log them)")
    return done


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _mlflow_experiment(client: Any) -> str:
    """The experiment the Trainer's MLflow callback logs to: ``MLFLOW_EXPERIMENT_NAME`` (made when
    missing), else ``MLFLOW_EXPERIMENT_ID``, else the default experiment."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        found = client.get_experiment_by_name(name)
        return str(found.experiment_id) if found else str(client.create_experiment(name))
    return os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"


def mlflow_runs_of(client: Any, experiment_id: str, folder: Path) -> list[Any]:
    """The MLflow runs that hold a study folder's results, newest first (superseded ones included)."""
    value = str(folder).replace("\\", "\\\\").replace("'", "\\'")
    return list(client.search_runs([experiment_id], filter_string=f"tags.`{FOLDER_TAG}` = '{value}'",
                                   order_by=["attributes.start_time DESC"]))


def log_mlflow(results: StudyResults, tracking_uri: str | None = None) -> str:
    """Log ``results`` into the study's MLflow run; returns ``run <id> in <store>``.

    Params and metrics of an MLflow run cannot be replaced, only appended to: a study whose results
    changed gets a new run (the previous one tagged ``lorascope.superseded_by``), one whose results did
    not change keeps its run untouched.
    """
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    experiment = _mlflow_experiment(client)
    digest = results.digest()
    current = [r for r in mlflow_runs_of(client, experiment, results.folder) if SUPERSEDED_TAG not in r.data.tags]
    if current and current[0].data.tags.get(DIGEST_TAG) == digest:
        return f"run {current[0].info.run_id} in {uri} (unchanged)"
    run = client.create_run(experiment, run_name=results.name,
                            tags={FOLDER_TAG: str(results.folder), DIGEST_TAG: digest, "lorascope.study": results.name})
    run_id = run.info.run_id
    stamp = int(run.info.start_time)
    metrics = [Metric(name, value, stamp, step) for name, points in sorted(results.series.items()) for step, value in points]
    params = [Param(k, v) for k, v in sorted(results.params.items())]
    tags = [RunTag(k, v) for k, v in sorted(results.tags.items())]
    # MLflow takes at most 1000 metrics, 100 params and 100 tags per request.
    for batch in _chunks(metrics, 1000):
        client.log_batch(run_id, metrics=batch)
    for batch in _chunks(params, 100):
        client.log_batch(run_id, params=batch)
    for batch in _chunks(tags, 100):
        client.log_batch(run_id, tags=batch)
    client.set_terminated(run_id)
    for old in current:
        client.set_tag(old.info.run_id, SUPERSEDED_TAG, run_id)
    return f"run {run_id} in {uri}"


def log_tensorboard(results: StudyResults) -> str:
    """Write ``results`` as TensorBoard events under ``<study>/tensorboard/`` (replaced whole: a rerun
    must not add a second point at each step); returns the folder."""
    from torch.utils.tensorboard import SummaryWriter

    folder = results.folder / TENSORBOARD_DIR
    shutil.rmtree(folder, ignore_errors=True)
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for name, points in sorted(results.series.items()):
            for step, value in points:
                writer.add_scalar(name, value, global_step=step)
        for name, text in sorted(results.tags.items()):
            writer.add_text(name, text, global_step=0)
        writer.add_text("study/params", "\n".join(f"- {k}: {v}" for k, v in sorted(results.params.items())), global_step=0)
    finally:
        writer.close()
    return str(folder)


def log_wandb(results: StudyResults) -> str:
    """Write ``results`` as an offline W&B run under ``<study>/wandb/`` (``wandb sync`` uploads it);
    returns the run's folder.

    W&B steps must only grow within a run, so each series is logged against its own step metric
    (``layer`` or ``batch_size``, declared with ``define_metric``) and single numbers and texts go to
    the run's summary. A rerun whose results are unchanged writes nothing (``<study>/wandb/`` keeps
    the digest of the last run it wrote); changed results make a new offline run beside the old one.
    """
    import wandb

    marker = results.folder / WANDB_DIR / "lorascope-results.json"
    digest = results.digest()
    last = json.loads(marker.read_text()) if marker.is_file() else {}
    if last.get("digest") == digest and Path(last.get("run", "")).is_dir():
        return f"{last['run']} (unchanged)"
    run = wandb.init(mode="offline", dir=str(results.folder), project=os.environ.get("WANDB_PROJECT", "lorascope"),
                     name=results.name, config=results.params, reinit="create_new",
                     settings=wandb.Settings(silent=True, console="off"))
    try:
        steps = {"drift_by_layer/": "layer", "serving/": "batch_size"}
        for prefix, step_name in steps.items():
            run.define_metric(step_name, hidden=True)
            run.define_metric(f"{prefix}*", step_metric=step_name)
        single: dict[str, Any] = dict(sorted(results.tags.items()))
        for name, points in sorted(results.series.items()):
            step_of = next((s for p, s in steps.items() if name.startswith(p)), None)
            if step_of is None:
                single[name] = points[-1][1]
                continue
            for step, value in points:
                run.log({step_of: step, name: value})
        run.summary.update(single)
        where = str(Path(run.dir).parent)
    finally:
        run.finish()
    marker.write_text(json.dumps({"digest": digest, "run": where}))
    return where
