"""The study file: model, tasks, methods, seeds, per-method training settings, drift and bench settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from lorascope.config import StrictModel, build_config, load_yaml
from lorascope.drift.config import DriftSettings
from lorascope.lenses.config import ForgettingSettings, ProbeSettings, WeightLensSettings
from lorascope.study.executor import ExecutorSettings
from lorascope.train.config import VARIANT_NAME, TrainConfig

METHODS = ("lora", "full")

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
    methods: list[str] = Field(["lora", "full"], description="methods: lora, full, or variants named under `variants`")
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named method variants: name -> {method: lora | full, and its training settings} "
                    "(e.g. lora_r64: {method: lora, lora_r: 64, lora_alpha: 128})")
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
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)

    @field_validator("tasks", "methods", "seeds")
    @classmethod
    def _non_empty(cls, v: list) -> list:
        if not v:
            raise ValueError("must list at least one entry")
        if len(set(map(str, v))) != len(v):
            raise ValueError("entries must be distinct")
        return v

    @model_validator(mode="after")
    def _methods_defined(self) -> StudyConfig:
        for name, spec in self.variants.items():
            if name in METHODS:
                raise ValueError(f"variants.{name}: '{name}' is a method; give the variant another name")
            if not re.match(VARIANT_NAME, name):
                raise ValueError(f"variants.{name}: a variant name is lower-case letters, digits and _, "
                                 "starting with a letter (it becomes part of run folder names)")
            if spec.get("method") not in METHODS:
                raise ValueError(f"variants.{name}.method: expected 'lora' or 'full', got {spec.get('method')!r}")
            if "variant" in spec:
                raise ValueError(f"variants.{name}.variant: set by the study (the variant's name)")
        for name in self.methods:
            if name not in METHODS and name not in self.variants:
                raise ValueError(f"methods: '{name}' is neither lora, full nor a name under variants "
                                 f"({', '.join(self.variants) or 'none defined'})")
        return self

    def method_of(self, name: str) -> str:
        """``lora`` or ``full``: the method of a method name or variant."""
        return name if name in METHODS else str(self.variants[name]["method"])

    def method_layers(self, name: str) -> list[dict[str, Any]]:
        """The settings a method name contributes: its variant's (if any), then ``method_train``'s."""
        spec = {k: v for k, v in self.variants.get(name, {}).items() if k != "method"}
        identity = {"method": self.method_of(name), "variant": name if name in self.variants else None}
        return [spec, self.method_train.get(name, {}), identity]

    def train_config(self, task: str, method: str, seed: int, tuned: dict[str, Any] | None = None) -> TrainConfig:
        """The resolved training config of one unit; ``method`` is a method or a variant name.

        Layers, later wins: shared < the variant's settings < per-method < per-task settings <
        ``tuned`` (the searched parameters of the HPO stage's best trial, when that stage ran).
        """
        variant, per_method, identity = self.method_layers(method)
        layers = [self.train, variant, per_method, self.task_train.get(task, {}), tuned or {},
                  dict(task=task, seed=seed, model=self.model, data_dir=self.data_dir, **identity)]
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
    from lorascope.hpo.space import DEFAULT_SPACES

    h = cfg.hpo
    variant, per_method, identity = cfg.method_layers(method)
    train = {**cfg.train, **variant, **per_method, **cfg.task_train.get(task, {}), **h.train,
             **h.task_train.get(task, {})}
    if identity["variant"]:
        train["variant"] = identity["variant"]
    if cfg.data_dir:
        train["data_dir"] = cfg.data_dir
    kind = identity["method"]
    # What the variant sets (e.g. lora_r: 64) is what it is: fixed in its search, not searched over.
    space = {k: v for k, v in variant.items() if k in DEFAULT_SPACES[kind]}
    space.update(h.space.get(method, h.space.get(kind, {})))
    return build_config(HpoConfig, dict(task=task, method=kind, model=cfg.model, n_trials=h.n_trials, seed=h.seed,
                                        storage=h.storage, train=train, space=space),
                        source=f"study '{cfg.name}' hpo settings ({task}, {method})")
