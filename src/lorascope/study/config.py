"""The study file: model, tasks, methods, seeds, per-method training settings, drift and bench settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator

from lorascope.config import StrictModel, build_config, load_yaml
from lorascope.drift.config import DriftSettings
from lorascope.lenses.config import ForgettingSettings, ProbeSettings, WeightLensSettings
from lorascope.train.config import TrainConfig

STAGES = ("sanity", "baselines", "hpo", "train", "drift", "weights", "forgetting", "probes", "bench", "report")


class SanitySettings(StrictModel):
    samples: PositiveInt = Field(10, description="training examples to overfit")
    max_epochs: PositiveInt = Field(10, description="epochs allowed")
    threshold: float = Field(0.1, gt=0, description="training loss to reach")


class HpoSettings(StrictModel):
    n_trials: PositiveInt = Field(15, description="Optuna TPE trials per (task, method)")
    seed: int = Field(42, description="seed of the sampler and of the trials' training")
    train: dict[str, Any] = Field(default_factory=dict, description="training settings of every trial (e.g. epochs)")
    task_train: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                  description="per-task trial settings (e.g. sst2: {train_limit: 3000})")
    space: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-method search-space overrides")
    storage: str | None = Field(None, description="Optuna storage URL (default: SQLite in the study folder)")


class BenchSettings(StrictModel):
    max_length: PositiveInt | None = Field(None, description="truncation of the served inputs (default: the "
                                           "training max_length of the first task's LoRA runs)")
    batch_sizes: list[PositiveInt] = Field([1, 16], description="serving batch sizes")
    requests: PositiveInt = Field(64, description="measured requests per strategy and batch size")
    warmup: int = Field(8, ge=0, description="warm-up requests per strategy")
    overrides: dict[str, Any] = Field(default_factory=dict, description="further `lorascope bench` settings")

    @field_validator("overrides")
    @classmethod
    def _not_set_twice(cls, v: dict[str, Any]) -> dict[str, Any]:
        # The study sets these itself (its model and trained runs) or declares them above.
        taken = sorted(set(v) & ({"model", "adapters", "full_model"} | set(cls.model_fields)))
        if taken:
            raise ValueError(f"{', '.join(taken)}: set by the study or by bench.{taken[0]}, not in overrides")
        return v


class StudyConfig(StrictModel):
    """One study: a grid of (task, method, seed) fine-tuning runs, their drift, serving cost, report."""

    name: str = Field("study", description="study name (report title)")
    model: str = Field("minilm", description="base model alias, folder or Hub id")
    tasks: list[str] = Field(["mrpc", "sst2", "rte"], description="tasks")
    methods: list[Literal["lora", "full"]] = Field(["lora", "full"], description="methods")
    seeds: list[int] = Field([42, 1337, 2024], description="seeds of every (task, method)")
    out: str = Field("runs/study", description="output folder (relative to the current directory)")
    stages: list[Literal["sanity", "baselines", "hpo", "train", "drift", "weights", "forgetting", "probes", "bench",
                         "report"]] = Field(
        [s for s in STAGES if s != "hpo"], description="stages to run, in order (add hpo to search first)")
    data_dir: str | None = Field(None, description="GLUE folder (default: $GLUE_DIR)")
    train: dict[str, Any] = Field(default_factory=dict, description="training settings shared by all runs")
    method_train: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-method training settings")
    task_train: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-task training settings")
    hpo: HpoSettings = Field(default_factory=HpoSettings)
    sanity: SanitySettings = Field(default_factory=SanitySettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    weights: WeightLensSettings = Field(default_factory=WeightLensSettings)
    forgetting: ForgettingSettings = Field(default_factory=ForgettingSettings)
    probes: ProbeSettings = Field(default_factory=ProbeSettings)
    bench: BenchSettings = Field(default_factory=BenchSettings)

    @field_validator("tasks", "methods", "seeds")
    @classmethod
    def _non_empty(cls, v: list) -> list:
        if not v:
            raise ValueError("must list at least one entry")
        if len(set(map(str, v))) != len(v):
            raise ValueError("entries must be distinct")
        return v

    def train_config(self, task: str, method: str, seed: int, tuned: dict[str, Any] | None = None) -> TrainConfig:
        """The resolved training config of one unit.

        Layers, later wins: shared < per-method < per-task settings < ``tuned`` (the searched
        parameters of the HPO stage's best trial, when that stage ran).
        """
        layers = [self.train, self.method_train.get(method, {}), self.task_train.get(task, {}), tuned or {},
                  dict(task=task, method=method, seed=seed, model=self.model, data_dir=self.data_dir)]
        return build_config(TrainConfig, *layers, source=f"study '{self.name}' train settings ({task}, {method})")


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read and validate a study YAML; every unit's training config is validated too."""
    cfg = build_config(StudyConfig, load_yaml(path, what="study file"), overrides or {}, source=str(path))
    for task in cfg.tasks:
        for method in cfg.methods:
            cfg.train_config(task, method, cfg.seeds[0])
            if "hpo" in cfg.stages:
                hpo_config(cfg, task, method)
    return cfg


def hpo_config(cfg: StudyConfig, task: str, method: str):
    """The search of one (task, method): the study's training settings under the HPO ones."""
    from lorascope.hpo import HpoConfig

    h = cfg.hpo
    train = {**cfg.train, **cfg.method_train.get(method, {}), **cfg.task_train.get(task, {}), **h.train,
             **h.task_train.get(task, {})}
    if cfg.data_dir:
        train["data_dir"] = cfg.data_dir
    return build_config(HpoConfig, dict(task=task, method=method, model=cfg.model, n_trials=h.n_trials, seed=h.seed,
                                        storage=h.storage, train=train, space=h.space.get(method, {})),
                        source=f"study '{cfg.name}' hpo settings ({task}, {method})")
