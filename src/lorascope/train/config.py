"""The training configuration: one typed model shared by LoRA and full fine-tuning."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator

from lorascope.config import StrictModel, check_report_to

# Inside the protocol's search ranges (LoRA 5e-5…5e-3, full 1e-6…5e-5). Measured on MiniLM, SST-2,
# 2,000 examples, 1 epoch: LoRA 5e-4 -> 51.0% (no learning), 2e-3 -> 77.2%; full 2e-5 -> 53.1%, 5e-5 -> 78.1%.
DEFAULT_LR = {"lora": 2e-3, "full": 5e-5}

# Settings added after runs were first stored: written into a run's config only when set, so that
# a run folder made before they existed still matches its unchanged config (and is not retrained).
# Each value is what runs made before the setting existed trained with (select_by: loss, dev
# chooses), not necessarily the field's default: a run folder without the key means that value.
_STORED_ONLY_WHEN_SET = {"variant": None, "lora_rslora": False, "lora_dora": False, "select_by": "loss",
                         "selection_split": None}
# A variant name becomes part of run folder names (``<task>-<variant>-s<seed>``): no dashes.
VARIANT_NAME = r"^[a-z][a-z0-9_]*$"
ALL_LINEAR = "all-linear"


def normalise_report_to(value: str | list[str]) -> str | list[str]:
    """One spelling per set of loggers, so that a run or study folder compares equal however its
    ``report_to`` was written: a string stays a string (``"none"``, the default, as stored before
    lists were accepted), ``"a,b"`` and a list of several names become the sorted list without
    repeats, a list of one name that name, an empty list ``"none"``."""
    names = [n.strip() for n in value.split(",") if n.strip()] if isinstance(value, str) else list(value)
    if isinstance(value, str) and len(names) <= 1:
        return value.strip() or "none"
    names = sorted(set(names))
    if not names:
        return "none"
    return names[0] if len(names) == 1 else names


class TrainConfig(StrictModel):
    """Everything that determines one fine-tuning run."""

    task: str = Field("sst2", description="GLUE task (mrpc, sst2, rte) or a task YAML file")
    method: Literal["lora", "full"] = Field("lora", description="lora: adapters + head trainable; full: every parameter")
    variant: str | None = Field(None, pattern=VARIANT_NAME,
                                description="name of this method variant in a study (e.g. lora_r64); default: the method")
    model: str = Field("minilm", description="alias (minilm, smollm2, tinyllama, tiny-llama), local folder or Hub id")
    seed: int = Field(42, description="seeds head initialisation, data order and dropout")
    data_dir: str | None = Field(None, description="GLUE folder (default: $GLUE_DIR, else the Hub)")
    data_seed: int = Field(0, description="seed of the train_limit / eval_limit subsets (same for every run)")
    train_limit: PositiveInt | None = Field(None, description="use a deterministic subset of this many training examples")
    eval_limit: PositiveInt | None = Field(None, description="use a deterministic subset of this many dev examples")
    max_length: PositiveInt = Field(384, description="truncate inputs to this many tokens")
    pad_to_max_length: bool = Field(False, description="pad every batch to max_length (slow; dynamic padding otherwise)")
    group_by_length: bool = Field(True, description="batch examples of similar length together (less padding; order still seeded)")
    epochs: float = Field(3.0, gt=0, description="training epochs")
    lr: float | None = Field(None, gt=0, description="peak learning rate (default: 2e-3 LoRA, 5e-5 full)")
    batch_size: PositiveInt = Field(16, description="per-device training batch size")
    eval_batch_size: PositiveInt = Field(64, description="per-device evaluation batch size")
    grad_accum: PositiveInt = Field(1, description="gradient accumulation steps (effective batch = batch_size × grad_accum × devices)")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="fraction of steps with linear warm-up before the cosine decay")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(0.3, gt=0, description="gradient clipping max-norm (protocol: 0.3)")
    # "metric" rather than a metric name: one study setting serves tasks with different metrics
    # (CoLA: matthews, SST-2: accuracy), and each task's main_metric already names its own.
    select_by: Literal["loss", "metric"] = Field(
        "loss",
        description="what chooses the checkpoint restored at the end and drives early stopping: loss (validation "
                    "loss, lower is better; the protocol's, default) or metric (the task's main_metric, higher is "
                    "better; use it on imbalanced tasks, where the loss can favour a checkpoint that predicts only "
                    "the majority label)",
    )
    # At most half: a larger hold-out leaves fewer examples to train on than to choose with.
    selection_split: float | None = Field(
        None, gt=0, le=0.5,
        description="hold out this fraction of the training examples (stratified by label, drawn by data_seed) to "
                    "choose the checkpoint and stop early on, so that dev scores only the final model "
                    "(default: off, dev chooses)",
    )
    patience: int = Field(3, ge=0, description="early stopping patience in evaluations without improvement of select_by (0: off)")
    evals_per_epoch: PositiveInt = Field(1, description="validation passes per epoch (early stopping granularity)")
    divergence_factor: float = Field(
        100.0, gt=1,
        description="fail the run (status: failed) when a training or validation loss exceeds this many times the "
                    "first logged training loss (at least 1); NaN/inf always fail",
    )
    lora_r: PositiveInt = Field(8, description="LoRA rank")
    lora_alpha: float = Field(16, gt=0, description="LoRA alpha (update scaled by alpha / r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    lora_targets: list[str] | Literal["all-linear"] | None = Field(
        None, description="modules to adapt (default per architecture: q_proj/v_proj, query/value); "
                          "all-linear: every linear layer but the classification head")
    lora_rslora: bool = Field(False, description="rank-stabilised LoRA: scale the update by alpha / sqrt(r) (PEFT use_rslora)")
    lora_dora: bool = Field(False, description="DoRA: weight-decomposed LoRA (PEFT use_dora); not servable by the runtime")
    bf16: bool | None = Field(None, description="bf16 mixed precision (default: on where the GPU supports it)")
    gradient_checkpointing: bool | None = Field(None, description="trade compute for memory (default: on for GPU)")
    report_to: str | list[str] = Field(
        "none",
        description="loggers of the training curves and, in a study, of its results: none, all, one name "
                    "(tensorboard, mlflow, wandb, ...) or a list of names (e.g. [mlflow, tensorboard])")
    logging_steps: PositiveInt = Field(10, description="log the training loss every this many steps")
    save_model: bool = Field(True, description="write the adapter / model folder (off for HPO trials)")

    @model_serializer(mode="wrap")
    def _omit_unset_later_settings(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key, default in _STORED_ONLY_WHEN_SET.items():
            if key in data and data[key] == default:
                del data[key]
        return data

    @property
    def label(self) -> str:
        """The run's method as a study names it: its variant, else ``lora`` or ``full``."""
        return self.variant or self.method

    @field_validator("report_to")
    @classmethod
    def _known_logger(cls, value: str | list[str]) -> str | list[str]:
        # Checked here too, not only by the CLI: the Trainer checks it only after the run folder exists.
        return check_report_to(normalise_report_to(value))

    @model_validator(mode="after")
    def _fill_lr(self) -> TrainConfig:
        if self.lr is None:
            # object.__setattr__ avoids re-running validation on assignment.
            object.__setattr__(self, "lr", DEFAULT_LR[self.method])
        return self
