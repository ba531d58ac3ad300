"""The configuration of one hyperparameter search: a (task, method, model) and how to search it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt

from lorascope.config import StrictModel, build_config
from lorascope.errors import ConfigError
from lorascope.hpo.space import SearchSpace, resolve_space
from lorascope.train.config import TrainConfig

# Settings that may differ between the machines of one distributed search without changing what
# a trial measures; they are left out when a worker checks that it joins a compatible study.
MACHINE_LOCAL = ("data_dir", "eval_batch_size", "report_to", "logging_steps", "bf16", "gradient_checkpointing")


class HpoConfig(StrictModel):
    """Everything that determines one search: what is tuned, on what, and where trials are stored."""

    task: str = Field(..., description="GLUE task (mrpc, sst2, rte) or a task YAML file")
    method: Literal["lora", "full"] = Field(..., description="lora or full")
    model: str = Field("minilm", description="alias (minilm, smollm2, tinyllama, tiny-llama), local folder or Hub id")
    n_trials: PositiveInt = Field(15, description="trials in the whole study (shared by all its workers)")
    seed: int = Field(42, description="seeds the TPE sampler, and the trials' training unless train.seed is set")
    storage: str | None = Field(
        None, description="Optuna storage URL (e.g. postgresql://user:pw@host/db); default sqlite:///<out>/optuna.db"
    )
    study_name: str | None = Field(None, description="default: hpo-<task>-<method>-<model>, so workers join one study")
    train: dict[str, Any] = Field(default_factory=dict, description="base training settings of every trial (e.g. train_limit)")
    space: dict[str, Any] = Field(default_factory=dict, description="search-space overrides per parameter (None drops one)")
    heartbeat_s: PositiveInt = Field(
        60, description="a worker records it is alive this often; a trial silent for 3x this long is failed and rerun"
    )

    def resolved_study_name(self) -> str:
        """The study's name: deterministic, so every worker of a search joins the same study."""
        return self.study_name or f"hpo-{self.task}-{self.train.get('variant') or self.method}-{self.model}"

    def search_space(self) -> SearchSpace:
        """The protocol's space for this method with this config's overrides (ConfigError if invalid)."""
        return resolve_space(self.method, self.space)

    def base_train(self) -> TrainConfig:
        """The training settings shared by every trial, before sampled parameters are applied."""
        for key in ("task", "method", "model"):
            if key in self.train:
                raise ConfigError(f"train.{key}: set {key} at the top level of the search config, not under train")
        defaults = {"task": self.task, "method": self.method, "model": self.model, "seed": self.seed}
        return build_config(TrainConfig, defaults, self.train, source="train")

    def trial_config(self, params: dict[str, Any]) -> TrainConfig:
        """The full training config of one trial: base settings + sampled ``params``, no model saved."""
        base = self.base_train().model_dump(mode="json")
        return build_config(TrainConfig, base, params, {"save_model": False}, source="trial")

    def study_signature(self) -> dict[str, Any]:
        """What must be equal for two workers to share a study: the space and the base settings.

        Base values of searched parameters are left out (the search overrides them), as are
        machine-local settings.
        """
        space = self.search_space()
        base = self.base_train().model_dump(mode="json")
        skip = set(space.params) | set(MACHINE_LOCAL) | {"save_model"}
        return {"space": space.to_dict(), "train": {k: v for k, v in base.items() if k not in skip}}
