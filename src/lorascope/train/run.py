"""``run_train``: fine-tune one (task, method, seed) and save it atomically.

Reads top to bottom: set-up (data, model, trainer) -> train -> evaluate the restored best
checkpoint -> save the adapter or model folder, ``metrics.json``, ``config.yaml`` and
``provenance.json`` into ``<out>.partial`` -> rename to ``<out>``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from lorascope.artifacts import check_same_config, finish, read_json, start_partial, write_json
from lorascope.config import config_to_dict
from lorascope.data import get_task, load_split, subsample, with_label_set
from lorascope.data.tasks import TaskSpec
from lorascope.data.tokenize import tokenize_dataset
from lorascope.models import LoadedModel, load_classifier, prepare_for_method
from lorascope.models.adapt import ParamCounts
from lorascope.models.registry import resolve_model
from lorascope.provenance import provenance
from lorascope.train.config import TrainConfig
from lorascope.train.resume import last_complete_checkpoint
from lorascope.train.trainer import build_trainer

METRICS_FILE = "metrics.json"


@dataclass
class PreparedRun:
    """Everything a training run needs, built from a config (shared with sanity checks and HPO)."""

    spec: TaskSpec
    loaded: LoadedModel
    counts: ParamCounts
    train_ds: datasets.Dataset
    eval_ds: datasets.Dataset


def load_task_data(cfg: TrainConfig) -> tuple[TaskSpec, datasets.Dataset, datasets.Dataset]:
    """The task spec and its (subsampled) train and dev splits, untokenised."""
    spec = with_label_set(get_task(cfg.task), cfg.data_dir)
    train = subsample(load_split(spec, "train", cfg.data_dir), cfg.train_limit, cfg.data_seed)
    dev = subsample(load_split(spec, "validation", cfg.data_dir), cfg.eval_limit, cfg.data_seed)
    return spec, train, dev


def prepare_run(cfg: TrainConfig) -> PreparedRun:
    resolve_model(cfg.model)  # a bad model name fails before any data is read
    spec, train, dev = load_task_data(cfg)
    loaded = load_classifier(cfg.model, spec.label_names, cfg.seed)
    model, counts = prepare_for_method(
        loaded.model, cfg.method, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, targets=cfg.lora_targets
    )
    loaded.model = model
    tok = dict(is_pair=spec.is_pair, is_decoder=loaded.is_decoder, max_length=cfg.max_length)
    return PreparedRun(
        spec=spec,
        loaded=loaded,
        counts=counts,
        train_ds=tokenize_dataset(train, loaded.tokenizer, **tok),
        eval_ds=tokenize_dataset(dev, loaded.tokenizer, **tok),
    )


def completed_metrics(out: Path, resolved: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of a finished run in ``out`` with the same config, None if there is none."""
    if not out.exists():
        return None
    check_same_config(out, resolved)
    return read_json(out / METRICS_FILE)


def run_train(cfg: TrainConfig, out: Path | str, *, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Fine-tune, evaluate on dev, save; returns the contents of ``metrics.json``.

    A finished run with the same config is not redone (its metrics are returned); with a
    different config it is an error unless ``overwrite``. A killed run resumes from its last
    checkpoint in ``<out>.partial``. A diverging run ends with ``status: failed``.
    """
    out = Path(out)
    resolved = config_to_dict(cfg)
    if overwrite and out.exists():
        shutil.rmtree(out)
    done = completed_metrics(out, resolved)
    if done is not None:
        return done
    started = time.perf_counter()
    # Data and model are validated before anything is written: bad input leaves no folder.
    run = prepare_run(cfg)
    partial = start_partial(out, resolved)
    checkpoints = partial / "checkpoints"
    trainer, guard = build_trainer(run.loaded.model, run.loaded.tokenizer, run.train_ds, run.eval_ds, cfg, run.spec,
                                   checkpoints, progress=progress)
    resume = last_complete_checkpoint(checkpoints)
    train_output = trainer.train(resume_from_checkpoint=resume)
    final_eval = trainer.evaluate() if guard.reason is None else {}
    if not trainer.is_world_process_zero():
        return {}

    metrics = _collect_metrics(cfg, run, trainer, train_output, final_eval, guard.reason, time.perf_counter() - started)
    if guard.reason is None and cfg.save_model:
        folder = partial / ("adapter" if cfg.method == "lora" else "model")
        trainer.model.save_pretrained(folder)
        run.loaded.tokenizer.save_pretrained(folder)
    shutil.rmtree(checkpoints, ignore_errors=True)
    write_json(partial / METRICS_FILE, metrics)
    write_json(partial / "provenance.json", provenance(cfg.seed))
    finish(partial, out)
    return metrics


def _collect_metrics(cfg, run: PreparedRun, trainer, train_output, final_eval, failure, runtime_s) -> dict[str, Any]:
    history = trainer.state.log_history
    evals = [h for h in history if "eval_loss" in h and "eval_runtime" in h]
    best_step = None
    if trainer.state.best_model_checkpoint:
        best_step = int(Path(trainer.state.best_model_checkpoint).name.split("-")[-1])
    best_epoch = next((h["epoch"] for h in evals if h.get("step") == best_step), None)
    dev = {k.removeprefix("eval_"): v for k, v in final_eval.items() if k.removeprefix("eval_") in (*run.spec.metrics, "loss")}
    real_tokens = int(sum(len(x) for x in run.train_ds["input_ids"]) * float(trainer.state.epoch or 0))
    return {
        "status": "failed" if failure else "ok",
        "reason": failure,
        "task": run.spec.name,
        "method": cfg.method,
        "model": cfg.model,
        "seed": cfg.seed,
        "main_metric": run.spec.main_metric,
        "dev": dev,
        "n_train": len(run.train_ds),
        "n_eval": len(run.eval_ds),
        "best_step": best_step,
        "best_epoch": best_epoch,
        "epochs_trained": trainer.state.epoch,
        "steps": trainer.state.global_step,
        "train_loss": train_output.training_loss,
        "train_loss_curve": [
            {"step": h["step"], "epoch": h["epoch"], "loss": h["loss"]} for h in history if "loss" in h and "eval_loss" not in h
        ],
        "eval_curve": [{"step": h["step"], "epoch": h["epoch"], "loss": h["eval_loss"]} for h in evals],
        "runtime_s": round(runtime_s, 3),
        "train_runtime_s": train_output.metrics.get("train_runtime"),
        "tokens_processed": int(trainer.state.num_input_tokens_seen),
        "tokens_real": real_tokens,
        "parameters": run.counts.to_dict(),
        "is_decoder": run.loaded.is_decoder,
        "base_model_source": run.loaded.source,
        "label_names": list(run.spec.label_names),
    }
