"""Trainer callbacks: stop on divergence, keep resumed runs identical, stop when the loss is low enough."""

from __future__ import annotations

import math
from typing import Any, cast

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class DivergenceGuard(TrainerCallback):
    """Stops training at the first sign of divergence and remembers why.

    Divergence is a non-finite training loss, validation loss or gradient norm, or a training or
    validation loss above ``factor`` × the reference loss. The reference is the first logged
    training loss (the untrained model's loss on its first batch, logged at step 1), floored at
    1 nat so that a model that starts near zero loss is not failed for ordinary overfitting.
    The reference is read from ``state.log_history``, which a resumed run restores from its
    checkpoint, so the threshold does not move when a run is resumed.

    Args:
        factor: the multiple of the reference loss that counts as divergence
            (``TrainConfig.divergence_factor``); None checks only for NaN/inf.
    """

    def __init__(self, factor: float | None = None) -> None:
        self.factor = factor
        self.reason: str | None = None

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict[str, float] | None = None,
               **kwargs: Any) -> TrainerControl:
        problem = self._problem(logs or {}, state.log_history)
        if problem is not None:
            self.reason = f"{problem} at step {state.global_step} (epoch {state.epoch or 0:.2f})"
            control.should_training_stop = True
            control.should_save = False  # a diverged model must not become the resume point
            control.should_evaluate = False
        return control

    def _problem(self, logs: dict[str, float], history: list[dict[str, float]]) -> str | None:
        """What is wrong with ``logs`` (e.g. ``"loss became nan"``), or None."""
        for key in ("loss", "eval_loss", "grad_norm"):
            value = logs.get(key)
            if value is not None and not math.isfinite(float(value)):
                return f"{key} became {value}"
        first = self.reference(history)
        if self.factor is None or first is None:
            return None
        limit = self.factor * max(first, 1.0)
        for key in ("loss", "eval_loss"):
            value = logs.get(key)
            if value is not None and float(value) > limit:
                return f"{key} {float(value):.4g} > {limit:.4g} ({self.factor:g} × max(1, initial training loss {first:.4g}))"
        return None

    @staticmethod
    def reference(history: list[dict[str, float]]) -> float | None:
        """The first logged training loss if it is finite, else None (no divergence limit yet)."""
        first = next((float(h["loss"]) for h in history if "loss" in h), None)
        return first if first is not None and math.isfinite(first) else None


class LogAtCheckpoints(TrainerCallback):
    """Logs the training loss at every checkpoint and at the last step.

    The Trainer accumulates the training loss between logging steps in memory only, so a run
    resumed from a checkpoint between two logging steps would log a different average at the next
    one (and its reported training loss would cover only the steps since the resume). Logging at
    each checkpoint leaves nothing unlogged in a checkpoint: the loss curve of a resumed run, and
    the mean training loss computed from it, match an uninterrupted run.
    """

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> TrainerControl:
        # DefaultFlowCallback, which runs first, has already decided whether this step saves or ends.
        if control.should_save or control.should_training_stop:
            control.should_log = True
        return control


class StopIfResumedAtEnd(TrainerCallback):
    """Stops a run resumed from the checkpoint that was written when its training ended.

    The Trainer saves a checkpoint at the step where training stops (early stopping, or the last
    step) and records in it, under ``stateful_callbacks["TrainerControl"]``, that training was
    stopping. Resuming from it restores that flag but ``CallbackHandler.on_train_begin`` clears it,
    so the Trainer would train on past the step where the uninterrupted run stopped. Setting it
    again here makes ``LorascopeTrainer`` skip straight to the end of training (restoring the best
    checkpoint), as the uninterrupted run did.
    """

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> TrainerControl:
        # Annotated as a list of callbacks, but a state restored from a checkpoint holds what each one saved:
        # callback name -> its state, or a list of states.
        saved = cast("dict[str, Any]", state.stateful_callbacks or {})
        stored = saved.get("TrainerControl") or {}
        if isinstance(stored, list):
            stored = stored[-1] if stored else {}
        if state.global_step > 0 and stored.get("args", {}).get("should_training_stop"):
            control.should_training_stop = True
        return control


class EpochLossRecorder(TrainerCallback):
    """Averages the training loss over each epoch and optionally stops below a threshold.

    Used by the sanity check: "can the model overfit 10 samples to loss < 0.1?".
    """

    def __init__(self, stop_below: float | None = None) -> None:
        self.stop_below = stop_below
        self.epoch_losses: list[float] = []
        self._sum = 0.0
        self._count = 0

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict[str, float] | None = None,
               **kwargs: Any) -> TrainerControl:
        if logs and "loss" in logs:
            self._sum += float(logs["loss"])
            self._count += 1
        return control

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> TrainerControl:
        if self._count:
            self.epoch_losses.append(self._sum / self._count)
            self._sum, self._count = 0.0, 0
            if self.stop_below is not None and self.epoch_losses[-1] < self.stop_below:
                control.should_training_stop = True
        return control
