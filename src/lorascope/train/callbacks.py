"""Trainer callbacks: stop on divergence, stop when the training loss is low enough."""

from __future__ import annotations

import math

from transformers import TrainerCallback


class DivergenceGuard(TrainerCallback):
    """Stops training at the first non-finite training or validation loss and remembers why."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "eval_loss", "grad_norm"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                self.reason = f"{key} became {value} at step {state.global_step} (epoch {state.epoch:.2f})"
                control.should_training_stop = True
                control.should_save = False
                control.should_evaluate = False
                break
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

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._sum += float(logs["loss"])
            self._count += 1
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._count:
            self.epoch_losses.append(self._sum / self._count)
            self._sum, self._count = 0.0, 0
            if self.stop_below is not None and self.epoch_losses[-1] < self.stop_below:
                control.should_training_stop = True
        return control
