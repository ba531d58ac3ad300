"""``run_train``: fine-tune one (task, method, seed) and save it atomically.

Reads top to bottom: set-up (data, model, trainer) -> train (resuming from the newest complete
checkpoint in ``<out>.partial/checkpoints``) -> evaluate the restored best checkpoint on dev and
check how it was chosen (one label for everything, a near-perfect start) -> save the
adapter or model folder, ``config.yaml``, ``provenance.json`` and, last, ``metrics.json`` into
``<out>.partial`` -> delete the checkpoints -> rename to ``<out>`` (replacing an old run only now).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import datasets
import numpy as np

from lorascope.artifacts import Commit, check_same_config, write_json
from lorascope.config import config_to_dict
from lorascope.data import get_task, load_split, subsample, with_label_set
from lorascope.data.tasks import TaskSpec, task_record
from lorascope.data.tokenize import tokenize_dataset
from lorascope.metrics import unflatten_eval
from lorascope.models import LoadedModel, load_classifier, prepare_for_method
from lorascope.models.adapt import ParamCounts
from lorascope.models.registry import resolve_model
from lorascope.provenance import provenance
from lorascope.run_folder import METRICS_FILE, RunFolder, RunRecord
from lorascope.train.config import TrainConfig
from lorascope.train.learned import (
    constant_restored_warning,
    leak_check,
    leak_warning,
    learning_check,
    majority_score,
)
from lorascope.train.resume import last_complete_checkpoint
from lorascope.train.selection import DEV, SELECTION_SPLIT, selection_metric, split_for_selection
from lorascope.train.trainer import build_trainer, model_inputs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, Trainer
    from transformers.trainer_utils import TrainOutput

    from lorascope.models.adapt import AdaptedModel

CHECKPOINTS = "checkpoints"  # the Trainer's checkpoints inside <out>.partial
log = logging.getLogger(__name__)


class _TokenizeArgs(TypedDict):
    """How every split of a run is tokenised."""

    is_pair: bool
    is_decoder: bool
    max_length: int


@dataclass
class PreparedRun:
    """Everything a training run needs, built from a config (shared with sanity checks and HPO).

    ``train_ds`` is what the model trains on, ``eval_ds`` dev, and ``selection_ds`` the training
    examples held out by ``selection_split`` (None: dev chooses the checkpoint).
    """

    spec: TaskSpec
    loaded: LoadedModel
    counts: ParamCounts
    train_ds: datasets.Dataset
    eval_ds: datasets.Dataset
    selection_ds: datasets.Dataset | None = None

    @property
    def choosing_ds(self) -> datasets.Dataset:
        """The examples evaluated during training, which choose the checkpoint and stop training early."""
        return self.eval_ds if self.selection_ds is None else self.selection_ds

    @property
    def choosing_split(self) -> str:
        """Which split ``choosing_ds`` is: ``dev`` or ``selection_split``."""
        return DEV if self.selection_ds is None else SELECTION_SPLIT


def load_task_data(cfg: TrainConfig) -> tuple[TaskSpec, datasets.Dataset, datasets.Dataset]:
    """The task spec and its (subsampled) train and dev splits, untokenised."""
    spec = with_label_set(get_task(cfg.task), cfg.data_dir)
    train = subsample(load_split(spec, "train", cfg.data_dir), cfg.train_limit, cfg.data_seed)
    dev = subsample(load_split(spec, "validation", cfg.data_dir), cfg.eval_limit, cfg.data_seed)
    return spec, train, dev


def prepare_run(cfg: TrainConfig) -> PreparedRun:
    """The data, tokenized datasets and model, adapted to the method, of one training run.

    The model name is checked and the data split before the model loads, so a bad setting fails fast."""
    resolve_model(cfg.model)  # a bad model name fails before any data is read
    spec, train, dev = load_task_data(cfg)
    train, held = split_for_selection(train, cfg.selection_split, cfg.data_seed)  # before the model loads: fails fast
    loaded = load_classifier(cfg.model, spec.label_names, cfg.seed)
    model, counts = prepare_for_method(
        cast("PreTrainedModel", loaded.model), cfg.method,  # load_classifier's model is not wrapped yet
        r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, targets=cfg.lora_targets,
        rslora=cfg.lora_rslora, dora=cfg.lora_dora,
    )
    loaded.model = model
    tok: _TokenizeArgs = {"is_pair": spec.is_pair, "is_decoder": loaded.is_decoder, "max_length": cfg.max_length}
    return PreparedRun(
        spec=spec,
        loaded=loaded,
        counts=counts,
        train_ds=tokenize_dataset(train, loaded.tokenizer, **tok, source=f"task {spec.name}, split train"),
        eval_ds=tokenize_dataset(dev, loaded.tokenizer, **tok, source=f"task {spec.name}, split validation"),
        selection_ds=None if held is None else tokenize_dataset(
            held, loaded.tokenizer, **tok, source=f"task {spec.name}, split train (held out by selection_split)"),
    )


def completed_metrics(out: Path, resolved: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of a finished run in ``out`` with the same config, None if there is none."""
    if not out.exists():
        return None
    check_same_config(out, resolved)
    return RunFolder(out).raw()


def run_train(cfg: TrainConfig, out: Path | str, *, overwrite: bool = False, progress: bool = True) -> RunRecord | None:
    """Fine-tune, evaluate on dev, save; returns the run's record (``metrics.json``).

    A finished run with the same config is not redone (its metrics are returned); with a
    different config it is an error unless ``overwrite``. With ``overwrite`` the data and model
    are validated and the new run is completed in ``<out>.partial`` before it replaces ``out``,
    so bad input or a crash leaves the old run intact. A killed run resumes from its newest
    complete checkpoint in ``<out>.partial`` (or, killed while writing its outputs, only
    finishes writing them) and ends identical to an uninterrupted run. A diverging run ends
    with ``status: failed``. Warnings about how the checkpoint was chosen (see
    ``lorascope.train.learned``) are logged and kept in the record's ``warnings``.

    Args:
        cfg: the run's settings.
        out: the run folder.
        overwrite: replace a finished run in ``out``, whatever its config.
        progress: show the Trainer's progress bar.

    Returns:
        The record; None on the processes of a distributed run other than the main one.
    """
    out = Path(out)
    resolved = config_to_dict(cfg)
    unit = Commit(out, resolved, overwrite=overwrite, seed=cfg.seed)
    unit.check()  # completes a cut-off commit; other settings are an error unless overwrite
    if not overwrite:
        done = completed_metrics(out, resolved)
        if done is not None:
            return RunRecord.model_validate(done)
    started = time.perf_counter()
    # Data and model are validated before anything is written: bad input leaves no folder and,
    # with overwrite, the finished run untouched.
    run = prepare_run(cfg)
    partial = unit.begin()
    # metrics.json is written last (atomically): a partial holding it was killed after its
    # outputs were complete, while deleting its checkpoints or being renamed into place.
    metrics = RunFolder(partial).raw() if RunFolder.holds_run(partial) else None
    if metrics is None:
        metrics = _train_and_save(cfg, run, partial, started, progress)
    if metrics is None or int(os.environ.get("RANK", "0")) != 0:
        return None  # not the main process of a distributed run: rank 0 writes the folder
    shutil.rmtree(partial / CHECKPOINTS, ignore_errors=True)
    unit.complete()
    return RunRecord.model_validate(metrics)


def _train_and_save(cfg: TrainConfig, run: PreparedRun, partial: Path, started: float, progress: bool) -> dict[str, Any] | None:
    """Train (resuming from the newest complete checkpoint), evaluate, and write the outputs into ``partial``.

    Returns the metrics, or None on processes other than the main one.
    """
    checkpoints = partial / CHECKPOINTS
    trainer, guard = build_trainer(run.loaded.model, run.loaded.tokenizer, run.train_ds, run.choosing_ds, cfg, run.spec,
                                   checkpoints, progress=progress)
    train_output = trainer.train(resume_from_checkpoint=last_complete_checkpoint(checkpoints))
    dev_eval, dev_predictions = None, None
    if guard.reason is None:
        # The restored checkpoint predicts dev once more, for its per-example predictions (a metric
        # comparison's uncertainty over dev examples needs them). With a selection split this is
        # also the first time dev meets the model. Every process predicts (a distributed prediction
        # gathers its shards); predict, unlike evaluate, logs nothing and calls no evaluation
        # callback, so the log history stays that of the split that chose.
        dev_inputs = model_inputs(run.eval_ds)
        prediction = trainer.predict(dev_inputs, metric_key_prefix="eval")
        dev_eval = prediction.metrics if run.selection_ds is not None else None
        # The Trainer evaluates in its own order (length-grouped with group_by_length): predictions
        # come back in that order, which its eval sampler (seeded, so the same again) reproduces.
        sampler = trainer._get_eval_sampler(dev_inputs) if trainer.args.world_size == 1 else None
        order = list(sampler) if sampler is not None else list(range(len(dev_inputs)))
        dev_predictions = per_example_predictions(run.eval_ds, prediction, order)
    if not trainer.is_world_process_zero():
        return None
    metrics = _collect_metrics(cfg, run, trainer, train_output, guard.reason, time.perf_counter() - started, dev_eval)
    if dev_predictions is not None:
        metrics["dev_predictions"] = dev_predictions
    for warning in metrics["warnings"]:
        log.warning("%s %s seed %s: %s", run.spec.name, cfg.label, cfg.seed, warning)
    if guard.reason is None and cfg.save_model:
        folder = partial / ("adapter" if cfg.method == "lora" else "model")
        shutil.rmtree(folder, ignore_errors=True)  # half written by a killed attempt
        # The Trainer holds the model build_trainer was given (its own type says only nn.Module or None).
        cast("AdaptedModel", trainer.model).save_pretrained(folder)  # type: ignore[arg-type]  # PEFT annotates str
        run.loaded.tokenizer.save_pretrained(folder)
    write_json(partial / "provenance.json", provenance(cfg.seed))
    write_json(partial / METRICS_FILE, metrics)  # last: its presence means the outputs are complete
    return metrics


def per_example_predictions(eval_ds: datasets.Dataset, prediction: Any, order: list[int]) -> dict[str, list[Any]]:
    """``{"ids", "pred", "gold"}``: each dev example's id, predicted and gold label id, in dev order.

    Args:
        eval_ds: the tokenised dev split (``id`` and ``labels`` columns).
        prediction: the Trainer's ``PredictionOutput`` on it (``predictions``: logits [n, num_labels],
            row k for example ``order[k]``).
        order: the dataset index of each prediction row.
    """
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    pred = np.empty(len(order), dtype=int)
    pred[np.asarray(order)] = np.asarray(logits).argmax(-1)
    ids = eval_ds["id"] if "id" in eval_ds.column_names else list(range(len(eval_ds)))
    return {"ids": [str(i) for i in ids], "pred": pred.tolist(), "gold": np.asarray(eval_ds["labels"]).astype(int).tolist()}


def mean_train_loss(history: list[dict[str, Any]]) -> float | None:
    """The mean training loss over all steps, from the logged losses (each the mean since the previous log).

    ``TrainOutput.training_loss`` covers only the steps run since the last resume; the log
    history is restored from the checkpoint and, with a log at every checkpoint
    (``LogAtCheckpoints``), covers every step of a resumed run exactly as of an uninterrupted one.
    """
    total, last = 0.0, 0
    for h in history:
        if "loss" in h and "eval_loss" not in h:
            total += h["loss"] * (h["step"] - last)
            last = h["step"]
    return total / last if last else None


def best_evaluation(evals: list[dict[str, Any]], best_step: int | None, spec: TaskSpec) -> dict[str, Any]:
    """The dev evaluation of the restored best checkpoint, from the log history, when dev chose it.

    The Trainer evaluated that checkpoint when it saved it, and restoring it changes no weight,
    so the logged evaluation is the final one: evaluating the dev set again would only repeat it.
    """
    log = next((h for h in evals if h.get("step") == best_step), None)
    if log is None:
        return {"dev": {}, "per_label": {}, "predicted_share": None}
    return unflatten_eval(log, spec.metrics, spec.label_names)


def eval_curve(evals: list[dict[str, Any]], main: str) -> list[dict[str, Any]]:
    """One entry per evaluation during training: step, epoch, loss, the main metric and ``predicted_share``."""
    return [{"step": h["step"], "epoch": h["epoch"], "loss": h["eval_loss"], main: h.get(f"eval_{main}"),
             "predicted_share": h.get("eval_predicted_share")} for h in evals]


def _collect_metrics(cfg: TrainConfig, run: PreparedRun, trainer: Trainer, train_output: TrainOutput, failure: str | None,
                     runtime_s: float, dev_eval: dict[str, float] | None) -> dict[str, Any]:
    """The run's record; ``dev_eval``: the restored checkpoint's dev metrics when a selection split chose it."""
    history = trainer.state.log_history
    evals = [h for h in history if "eval_loss" in h and "eval_runtime" in h]
    best_step = None
    if trainer.state.best_model_checkpoint and failure is None:
        best_step = int(Path(trainer.state.best_model_checkpoint).name.split("-")[-1])
    best_epoch = next((h["epoch"] for h in evals if h.get("step") == best_step), None)
    if dev_eval is not None:
        best = unflatten_eval(dev_eval, run.spec.metrics, run.spec.label_names)
    else:  # dev chose the checkpoint (its evaluation is logged), or the run failed (nothing to report)
        best = best_evaluation(evals if run.selection_ds is None else [], best_step, run.spec)
    main = run.spec.main_metric
    gold = np.asarray(run.eval_ds["labels"])
    majority = majority_score(np.asarray(run.train_ds["labels"]), gold, main, run.spec.num_labels)
    learned = learning_check(main, best["dev"].get(main), majority, best["predicted_share"])
    curve = eval_curve(evals, main)
    split = run.choosing_split
    leak = leak_check(main, curve[0] if curve else None, best["dev"].get(main), split)
    warnings = [] if failure else [w for w in (constant_restored_warning(curve, best_step, main, cfg.select_by, split),
                                               leak_warning(leak)) if w]
    real_tokens = int(sum(len(x) for x in run.train_ds["input_ids"]) * float(trainer.state.epoch or 0))
    return {
        "status": "failed" if failure else "ok",
        "reason": failure,
        "task": run.spec.name,
        "method": cfg.method,
        **({"variant": cfg.variant} if cfg.variant else {}),
        "model": cfg.model,
        "seed": cfg.seed,
        "main_metric": main,
        "dev": best["dev"],
        "dev_per_label": best["per_label"],
        "learning_check": learned if failure is None else None,
        "leak_check": leak if failure is None else None,
        "warnings": warnings,
        "n_train": len(run.train_ds),
        "n_eval": len(run.eval_ds),
        "selection": {
            "split": split,
            "by": cfg.select_by,
            "metric": selection_metric(cfg, run.spec),
            "n": len(run.choosing_ds),
            "fraction": cfg.selection_split,
            "seed": cfg.data_seed if cfg.selection_split else None,
            "best_value": trainer.state.best_metric if failure is None else None,
        },
        "best_step": best_step,
        "best_epoch": best_epoch,
        "epochs_trained": trainer.state.epoch,
        "steps": trainer.state.global_step,
        "train_loss": mean_train_loss(history),
        "train_loss_curve": [
            {"step": h["step"], "epoch": h["epoch"], "loss": h["loss"]} for h in history if "loss" in h and "eval_loss" not in h
        ],
        "eval_curve": curve,
        "runtime_s": round(runtime_s, 3),
        "train_runtime_s": train_output.metrics.get("train_runtime"),
        "tokens_processed": int(trainer.state.num_input_tokens_seen),
        "tokens_real": real_tokens,
        "parameters": run.counts.to_dict(),
        "is_decoder": run.loaded.is_decoder,
        "base_model_source": run.loaded.source,
        "label_names": list(run.spec.label_names),
        "task_spec": task_record(run.spec),
    }
