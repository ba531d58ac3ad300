"""What a training run shows while it runs: a progress bar over optimizer steps and one line per evaluation.

It replaces the Trainer's tqdm bars, which print every log as a raw dict of strings and, in a log
file, fill it with carriage returns. Off a terminal, rich draws the bar once, when it ends.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lorascope.metrics import format_metric


class TrainProgress(TrainerCallback):
    """Steps done, the latest training loss, and each evaluation in the task's metrics.

    Args:
        metrics: the task's metric names, in the order to show them.
        split: what the evaluations run on (``dev``, or ``selection split`` when one is held out).
        console: where to draw (default: stdout).
    """

    def __init__(self, metrics: tuple[str, ...], split: str = "dev", console: Console | None = None) -> None:
        self.metrics = metrics
        self.split = split
        self.console = console or Console()
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task("training", total=state.max_steps, completed=state.global_step)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        if self.progress is None or not logs:
            return
        if "eval_loss" in logs:
            shown = ", ".join(f"{m} {format_metric(m, logs[f'eval_{m}'])}" for m in self.metrics if f"eval_{m}" in logs)
            self.progress.console.print(f"  step {state.global_step}/{state.max_steps} (epoch {state.epoch:.2f}): "
                                        f"{self.split} loss {logs['eval_loss']:.4f}, {shown}", highlight=False)
        elif "loss" in logs and self.task is not None:
            self.progress.update(self.task, description=f"training (loss {logs['loss']:.4f})")

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
