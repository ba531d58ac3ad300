"""Sanity check: every (task, method) must overfit a handful of training examples.

Protocol: 10 training samples, training loss < 0.1 within 10 epochs. A model that cannot
memorise 10 examples has a bug in its data, head or optimiser set-up.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from lorascope.records import SanityCheck
from lorascope.train.callbacks import EpochLossRecorder
from lorascope.train.config import TrainConfig
from lorascope.train.run import prepare_run
from lorascope.train.trainer import build_trainer

# Higher than the production defaults: with 10 examples the point is to memorise quickly.
# Measured on MiniLM with batch 4: full FT at 1e-4 stayed at loss 0.17-0.22 after 10 epochs.
SANITY_LR = {"lora": 5e-3, "full": 2e-4}


def run_sanity_one(base: TrainConfig, n_samples: int = 10, max_epochs: int = 10, threshold: float = 0.1,
                   progress: bool = True) -> SanityCheck:
    """Overfit ``n_samples`` training rows of ``base``'s task and method; passed if the loss falls below ``threshold``.

    Trains at most ``max_epochs`` epochs with dropout, warm-up, weight decay and early stopping off and
    the learning rate of ``SANITY_LR``, stopping as soon as an epoch's mean loss is below ``threshold``: a
    model that cannot memorise 10 rows has a bug in its data, loss or adapter wiring. A run the
    training guard stopped fails with the guard's reason."""
    cfg = base.model_copy(
        update=dict(
            train_limit=n_samples,
            eval_limit=n_samples,
            selection_split=None,  # memorise all n_samples rows: none is held out to choose a checkpoint
            epochs=float(max_epochs),
            batch_size=2,  # 5 optimiser steps per epoch: 50 chances to memorise 10 rows
            lr=SANITY_LR[base.method],
            warmup_ratio=0.0,
            lora_dropout=0.0,
            patience=0,
            logging_steps=1,
            weight_decay=0.0,
            # The protocol's 0.3 clip slows memorisation of 10 rows; this check is about bugs.
            max_grad_norm=1.0,
        )
    )
    run = prepare_run(cfg)
    recorder = EpochLossRecorder(stop_below=threshold)
    with tempfile.TemporaryDirectory(prefix="lorascope-sanity-") as tmp:
        trainer, guard = build_trainer(
            run.loaded.model, run.loaded.tokenizer, run.train_ds, run.eval_ds, cfg, run.spec, Path(tmp),
            evaluate=False, extra_callbacks=[recorder], progress=progress,
        )
        trainer.train()
    final = recorder.epoch_losses[-1] if recorder.epoch_losses else float("nan")
    return SanityCheck(
        task=run.spec.name,
        method=cfg.method,
        epochs_run=len(recorder.epoch_losses),
        final_loss=final,
        threshold=threshold,
        passed=guard.reason is None and final < threshold,
        reason=guard.reason,
    )
