"""Build a Hugging Face Trainer for either method from a ``TrainConfig``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from transformers import (
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_pt_utils import LengthGroupedSampler

from lorascope.data.tasks import TaskSpec
from lorascope.data.tokenize import CountingCollator
from lorascope.metrics import compute_metrics_fn
from lorascope.train.callbacks import DivergenceGuard, LogAtCheckpoints, StopIfResumedAtEnd
from lorascope.train.config import TrainConfig
from lorascope.train.progress import TrainProgress
from lorascope.train.selection import selection_metric

if TYPE_CHECKING:
    from lorascope.models.adapt import AdaptedModel


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order, drawn from a generator seeded by (seed, epoch) only.

    ``Trainer._get_train_sampler`` builds ``LengthGroupedSampler`` without a generator, so each
    epoch's permutation comes from the global torch RNG at the moment the epoch's iterator is
    created. A run resumed mid-epoch creates that iterator (accelerate's ``skip_first_batches``)
    in a fresh process, before the Trainer restores the checkpoint's RNG state: it draws a
    different permutation and trains on different batches. Here the order depends only on the
    seed and on the epoch that the Trainer passes to ``set_epoch`` at every epoch, resumed or not
    (the way accelerate's ``SeedableRandomSampler`` makes random batches resumable).

    Args:
        batch_size: rows per mega-batch unit (the Trainer's batch size × gradient accumulation).
        lengths: token count of every training row.
        seed: the data-order seed.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        # SeedSequence mixes (seed, epoch), so seed s at epoch e+1 does not replay seed s+1 at epoch e.
        self.generator.manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        indices: Iterator[int] = super().__iter__()  # type: ignore[no-untyped-call]  # unannotated in transformers
        return indices


class LorascopeTrainer(Trainer):
    """The Trainer with two changes that make a resumed run identical to an uninterrupted one."""

    def _get_train_sampler(self, train_dataset: Dataset[Any] | None = None) -> Sampler[Any] | None:
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            # Same lengths and batch size as the Trainer chose; only the source of randomness changes.
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
        return sampler

    def _run_epoch(self, *args: Any, **kwargs: Any) -> None:
        # The Trainer checks should_training_stop only after a step. A stop requested before the
        # epoch's first step (StopIfResumedAtEnd, when resuming from the checkpoint written where
        # training ended) must run no step at all, or the resumed run trains past that point.
        if self.control.should_training_stop:
            return None
        # Trainer._run_epoch is unannotated in transformers (it returns None).
        return super()._run_epoch(*args, **kwargs)  # type: ignore[no-untyped-call, no-any-return]


def hardware_flags(cfg: TrainConfig) -> tuple[bool, bool]:
    """(bf16, gradient checkpointing): explicit settings win, else on where a GPU supports them."""
    cuda = torch.cuda.is_available()
    bf16 = cfg.bf16 if cfg.bf16 is not None else (cuda and torch.cuda.is_bf16_supported())
    ckpt = cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else cuda
    return bool(bf16), bool(ckpt)


def build_trainer(
    model: AdaptedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_ds: datasets.Dataset,
    eval_ds: datasets.Dataset,
    cfg: TrainConfig,
    spec: TaskSpec,
    output_dir: Path,
    *,
    evaluate: bool = True,
    extra_callbacks: list[TrainerCallback] | None = None,
    progress: bool = True,
) -> tuple[Trainer, DivergenceGuard]:
    """A Trainer with the protocol's recipe.

    AdamW, cosine schedule with linear warm-up, clipping at ``max_grad_norm``, validation each
    epoch (or ``evals_per_epoch`` times) with early stopping on ``select_by`` (validation loss or
    the task's main metric) and the checkpoint best by it restored at the end.

    Args:
        train_ds, eval_ds: tokenised datasets (``input_ids``, ``attention_mask``, ``labels``…);
            ``eval_ds`` is what chooses the checkpoint (dev, or the ``selection_split`` hold-out).
        output_dir: where the Trainer keeps its checkpoints (resumable).
        evaluate: False for runs without validation (sanity checks).

    Returns:
        The trainer and its divergence guard (``guard.reason`` says why a run diverged).
    """
    assert cfg.lr is not None, "TrainConfig fills in the method's default learning rate"
    bf16, grad_ckpt = hardware_flags(cfg)
    steps_per_epoch = max(1, math.ceil(len(train_ds) / (cfg.batch_size * cfg.grad_accum * _world_size())))
    eval_steps = max(1, math.ceil(steps_per_epoch / cfg.evals_per_epoch))
    strategy = "steps" if evaluate else "no"
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a fraction of the total steps
        max_grad_norm=cfg.max_grad_norm,
        optim="adamw_torch",
        eval_strategy=strategy,
        eval_steps=eval_steps,
        save_strategy=strategy,
        save_steps=eval_steps,
        save_total_limit=1,
        load_best_model_at_end=evaluate,
        # One setting for both: EarlyStoppingCallback reads these two as well.
        metric_for_best_model=f"eval_{selection_metric(cfg, spec)}",
        greater_is_better=cfg.select_by != "loss",
        logging_strategy="steps",
        logging_steps=min(cfg.logging_steps, steps_per_epoch),
        logging_first_step=True,  # the untrained model's loss: the divergence guard's reference
        logging_nan_inf_filter=False,  # a NaN loss must reach the divergence guard
        report_to=cfg.report_to,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        activation_checkpointing=grad_ckpt,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        # Random batches of GLUE pairs are 30-45% padding; length-grouped mega-batches cut most of it.
        train_sampling_strategy="group_by_length" if cfg.group_by_length and not cfg.pad_to_max_length else "random",
        include_num_input_tokens_seen="all",
        # Under torchrun on CPU the Trainer needs gloo; outside torchrun no backend at all.
        ddp_backend="gloo" if _world_size() > 1 and not torch.cuda.is_available() else None,
        ddp_find_unused_parameters=False,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,  # TrainProgress draws the progress instead
        # Early stopping's patience counter lives in its callback; the Trainer saves it with every
        # checkpoint (ExportableState) but restores it only when asked.
        restore_callback_states_from_checkpoint=True,
    )
    guard = DivergenceGuard(cfg.divergence_factor)
    callbacks = [guard, LogAtCheckpoints(), StopIfResumedAtEnd(), *(extra_callbacks or [])]
    if evaluate and cfg.patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.patience))
    trainer = LorascopeTrainer(
        model=model,
        args=args,
        train_dataset=model_inputs(train_ds),
        eval_dataset=model_inputs(eval_ds) if evaluate else None,
        data_collator=CountingCollator(tokenizer, cfg.pad_to_max_length, cfg.max_length),
        processing_class=tokenizer,
        compute_metrics=compute_metrics_fn(spec.metrics, spec.label_names),
        callbacks=callbacks,
    )
    # Without tqdm the Trainer prints every log dict instead: TrainProgress shows them readably,
    # and a study prints its own lines.
    trainer.remove_callback(PrinterCallback)
    keep_tensorboard_curves(trainer, Path(output_dir).parent / "tensorboard")
    if progress:
        trainer.add_callback(TrainProgress(spec.metrics, "selection split" if cfg.selection_split else "dev"))
    return trainer, guard


def keep_tensorboard_curves(trainer: Trainer, folder: Path) -> None:
    """Point the Trainer's TensorBoard writer (when ``report_to`` names it) at ``folder`` in the run
    folder: by default it writes under the checkpoints folder, which is deleted when the run
    finishes. ``$TENSORBOARD_LOGGING_DIR``, when set, still wins."""
    from transformers.integrations.integration_utils import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(folder)


def model_inputs(ds: datasets.Dataset) -> datasets.Dataset:
    """The columns of a tokenised dataset that the model and the collator take (ids and texts dropped)."""
    return ds.select_columns([c for c in ("input_ids", "attention_mask", "token_type_ids", "labels") if c in ds.column_names])
