"""The training configuration: one typed model shared by LoRA and full fine-tuning."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from lorascope.config import StrictModel, check_report_to

# Inside the protocol's search ranges (LoRA 5e-5…5e-3, full 1e-6…5e-5). Measured on MiniLM, SST-2,
# 2,000 examples, 1 epoch: LoRA 5e-4 -> 51.0% (no learning), 2e-3 -> 77.2%; full 2e-5 -> 53.1%, 5e-5 -> 78.1%.
DEFAULT_LR = {"lora": 2e-3, "full": 5e-5}


class TrainConfig(StrictModel):
    """Everything that determines one fine-tuning run."""

    task: str = Field("sst2", description="GLUE task (mrpc, sst2, rte) or a task YAML file")
    method: Literal["lora", "full"] = Field("lora", description="lora: adapters + head trainable; full: every parameter")
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
    patience: int = Field(3, ge=0, description="early stopping patience in evaluations on validation loss (0: off)")
    evals_per_epoch: PositiveInt = Field(1, description="validation passes per epoch (early stopping granularity)")
    divergence_factor: float = Field(
        100.0, gt=1,
        description="fail the run (status: failed) when a training or validation loss exceeds this many times the "
                    "first logged training loss (at least 1); NaN/inf always fail",
    )
    lora_r: PositiveInt = Field(8, description="LoRA rank")
    lora_alpha: float = Field(16, gt=0, description="LoRA alpha (update scaled by alpha / r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    lora_targets: list[str] | None = Field(None, description="modules to adapt (default per architecture: q_proj/v_proj, query/value)")
    bf16: bool | None = Field(None, description="bf16 mixed precision (default: on where the GPU supports it)")
    gradient_checkpointing: bool | None = Field(None, description="trade compute for memory (default: on for GPU)")
    report_to: str = Field("none", description="Trainer loggers: none, tensorboard, wandb, mlflow, all")
    logging_steps: PositiveInt = Field(10, description="log the training loss every this many steps")
    save_model: bool = Field(True, description="write the adapter / model folder (off for HPO trials)")

    @field_validator("report_to")
    @classmethod
    def _known_logger(cls, value: str) -> str:
        # Checked here too, not only by the CLI: the Trainer checks it only after the run folder exists.
        return check_report_to(value)

    @model_validator(mode="after")
    def _fill_lr(self) -> TrainConfig:
        if self.lr is None:
            # object.__setattr__ avoids re-running validation on assignment.
            object.__setattr__(self, "lr", DEFAULT_LR[self.method])
        return self
