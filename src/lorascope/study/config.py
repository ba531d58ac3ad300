"""The study file: model, tasks, methods, seeds, per-method training settings, drift and bench settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import Field, PositiveInt, field_validator, model_validator

from lorascope.config import StrictModel, build_config, load_yaml
from lorascope.drift.config import DriftSettings
from lorascope.errors import ConfigError
from lorascope.lenses.config import ForgettingSettings, ProbeSettings, WeightLensSettings
from lorascope.models.device import DEVICE_HELP, DeviceSetting
from lorascope.study.executor import ExecutorSettings
from lorascope.train.config import VARIANT_NAME, TrainConfig

if TYPE_CHECKING:
    from lorascope.hpo.config import HpoConfig

METHODS = ("lora", "full")

# A task entry with one of these suffixes is a task file (anything else: a GLUE task's name).
TASK_FILE_SUFFIXES = (".yaml", ".yml")

Stage = Literal["sanity", "baselines", "hpo", "train", "drift", "weights", "forgetting", "probes", "bench", "report"]
STAGES: tuple[Stage, ...] = get_args(Stage)


class SanitySettings(StrictModel):
    """The study's sanity checks: can each (task, method) overfit a few training examples?"""

    samples: PositiveInt = Field(default=10, description="training examples to overfit")
    max_epochs: PositiveInt = Field(default=10, description="epochs allowed")
    threshold: float = Field(default=0.1, gt=0, description="training loss to reach")


class HpoSettings(StrictModel):
    """The study's hyperparameter search: one Optuna search per (task, method)."""

    n_trials: PositiveInt = Field(default=15, description="Optuna TPE trials per (task, method)")
    seed: int = Field(default=42, description="seed of the sampler and of the trials' training")
    train: dict[str, Any] = Field(default_factory=dict, description="training settings of every trial (e.g. epochs)")
    task_train: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                  description="per-task trial settings (e.g. sst2: {train_limit: 3000}), keyed by "
                                                              "a task of the study")
    space: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-method search-space overrides")
    storage: str | None = Field(default=None, description="Optuna storage URL (default: SQLite in the study folder)")


class BenchSettings(StrictModel):
    """The study's serving benchmark; the study sets the model and adapters itself."""

    max_length: PositiveInt | None = Field(default=None, description="truncation of the served inputs (default: the "
                                                   "training max_length of the first task's LoRA runs)")
    batch_sizes: list[PositiveInt] = Field(default=[1, 16], description="serving batch sizes")
    requests: PositiveInt = Field(default=64, description="measured requests per strategy and batch size")
    warmup: int = Field(default=8, ge=0, description="warm-up requests per strategy")
    overrides: dict[str, Any] = Field(default_factory=dict, description="further `lorascope bench` settings")

    @field_validator("overrides")
    @classmethod
    def _not_set_twice(cls, v: dict[str, Any]) -> dict[str, Any]:
        # The study sets these itself (its model and trained runs) or declares them above.
        taken = sorted(set(v) & ({"model", "adapters", "full_model"} | set(cls.model_fields)))
        if taken:
            raise ValueError(f"{', '.join(taken)}: set by the study or by bench.{taken[0]}, not in overrides")
        # Checked as `lorascope bench` would check them, now: the bench stage may run hours after the study starts.
        from pydantic import ValidationError

        from lorascope.bench.config import BenchConfig
        from lorascope.config import describe_validation_error

        try:
            BenchConfig.model_validate(v)
        except ValidationError as err:
            raise ValueError(describe_validation_error(err, "not valid for `lorascope bench`")) from None
        return v


class StudyConfig(StrictModel):
    """One study: a grid of (task, method, seed) fine-tuning runs, their drift, serving cost, report."""

    name: str = Field("study", description="study name (report title)")
    model: str = Field("minilm", description="base model alias, folder or Hub id")
    tasks: list[str] = Field(
        ["mrpc", "sst2", "rte"],
        description="GLUE tasks (mrpc, sst2, rte) or task YAML files; a relative path in a study file is relative "
                    "to the study file, not to the current directory. Each task is known by its name (a task "
                    "file's `name:`) in run folders, results, task_train and --only; two tasks may not share one")
    task_files: dict[str, str] = Field(
        default_factory=dict,
        description="filled in from 'tasks', not written by hand: task name -> its task file (absolute path), kept "
                    "in the study folder's config.yaml")
    methods: list[str] = Field(["lora", "full"], description="methods: lora, full, or variants named under `variants`")
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named method variants: name -> {method: lora | full, and its training settings} "
                    "(e.g. lora_r64: {method: lora, lora_r: 64, lora_alpha: 128})")
    sweep: dict[str, dict[str, list[Any]]] = Field(
        default_factory=dict,
        description="training settings swept per method: method -> setting -> values (e.g. lora: {lr: [1.0e-3, "
                    "2.0e-3]}); each value becomes a variant named <method>_<setting><value> (lora_lr0p001) with the "
                    "method's variant and method_train settings, the swept value winning. The verdicts compare the "
                    "point of each method whose runs have the best mean checkpoint-selection value on the "
                    "selection split (needs train.selection_split: dev chooses nothing); drift adds the frontier, "
                    "the comparison at matched accuracy and the method x setting interaction")
    seeds: list[int] = Field([42, 1337, 2024], description="seeds of every (task, method)")
    sweep_seeds: list[int] = Field(
        default_factory=list,
        description="with a sweep, the seeds every sweep point is trained with (a subset of seeds; default: all). "
                    "The point each method's selection rule chooses on them is then trained with the other seeds "
                    "too, so the verdicts compare every seed at a fraction of the sweep's cost; the frontier is "
                    "drawn over these seeds")
    out: str = Field("runs/study", description="output folder (relative to the current directory)")
    stages: list[Stage] = Field(
        [s for s in STAGES if s != "hpo"], description="stages to run, each once, in the order listed here (add hpo to search first)")
    data_dir: str | None = Field(None, description="GLUE folder (default: $GLUE_DIR)")
    device: DeviceSetting = Field(
        "auto", description=f"where the analyses put their models (drift, weights, forgetting, probes): {DEVICE_HELP}. "
                            "Training, sanity and hpo are placed by the Trainer (every visible GPU when CUDA is "
                            "available, else MPS where there is one, else the CPU; CUDA_VISIBLE_DEVICES picks GPUs), "
                            "bench by bench.overrides.device")
    train: dict[str, Any] = Field(default_factory=dict, description="training settings shared by all runs")
    method_train: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-method training settings, keyed by lora, full or a name under variants")
    task_train: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-task training settings, keyed by the name of a task of the study")
    hpo: HpoSettings = Field(default_factory=HpoSettings)
    sanity: SanitySettings = Field(default_factory=SanitySettings)
    # Without pydantic's mypy plugin, mypy reads a positional Field default (Field("mean", ...), as these settings
    # classes write them) as no default, so it takes them for classes that cannot be built without arguments.
    drift: DriftSettings = Field(default_factory=DriftSettings)  # type: ignore[arg-type]
    weights: WeightLensSettings = Field(default_factory=WeightLensSettings)  # type: ignore[arg-type]
    forgetting: ForgettingSettings = Field(default_factory=ForgettingSettings)  # type: ignore[arg-type]
    probes: ProbeSettings = Field(default_factory=ProbeSettings)  # type: ignore[arg-type]
    bench: BenchSettings = Field(default_factory=BenchSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)

    @model_validator(mode="before")
    @classmethod
    def _tasks_by_name(cls, data: Any) -> Any:
        """``tasks`` as task names, the task files they come from in ``task_files``.

        A name already in ``task_files`` (a stored ``config.yaml``) stays as it is; a GLUE task takes
        its registry name (``SST-2`` -> ``sst2``); a task file is read for its ``name:``.
        """
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) \
                or not isinstance(data.get("task_files", {}), dict):
            return data  # the field validators say what is wrong
        files = dict(data.get("task_files", {}))
        given: dict[str, str] = {}
        for entry in data["tasks"]:
            if not isinstance(entry, str):
                return data
            name = entry if entry in files else _task_identity(entry, files)
            if name in given:
                raise ValueError(f"tasks: '{given[name]}' and '{entry}' are both named '{name}'; "
                                 "give each task its own name")
            given[name] = entry
        return {**data, "tasks": list(given), "task_files": {n: f for n, f in files.items() if n in given}}

    @model_validator(mode="before")
    @classmethod
    def _sweep_points(cls, data: Any) -> Any:
        """Each swept method replaced by its points in ``methods``, each point a variant. A stored
        ``config.yaml`` holds the expanded form already, and reads back unchanged."""
        from lorascope.study.sweep import check_shape, expand_sweep, sweep_points

        if not isinstance(data, dict) or not isinstance(data.get("sweep"), dict) or not data["sweep"]:
            return data
        try:
            check_shape(data["sweep"])  # sweep_points below iterates over every setting's values
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        methods, variants, method_train = data.get("methods", ["lora", "full"]), data.get("variants", {}), \
            data.get("method_train", {})
        if not (isinstance(methods, list) and isinstance(variants, dict) and isinstance(method_train, dict)):
            return data  # the field validators say what is wrong
        kinds: dict[str, Any] = {name: v.get("method") for name, v in variants.items() if isinstance(v, dict)}  # as written
        if any(sweep_points(data["sweep"], kinds).values()) and not set(data["sweep"]) & set(methods):
            return data
        # A point takes its method's variant and method_train settings, then the swept value.
        bases = {name: {**variants.get(name, {"method": name}), **method_train.get(name, {})} for name in data["sweep"]}
        try:
            methods, variants = expand_sweep(methods, {**variants, **bases}, data["sweep"], METHODS)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        swept = set(data["sweep"])
        return {**data, "methods": methods, "variants": {k: v for k, v in variants.items() if k not in swept},
                "method_train": {k: v for k, v in method_train.items() if k not in swept}}

    @model_validator(mode="after")
    def _sweep_selects_off_dev(self) -> StudyConfig:
        if self.sweep and not self.train.get("selection_split"):
            raise ValueError("sweep: set train.selection_split (e.g. 0.1): the sweep's point of each method is "
                             "selected on training examples held out for it, never on the dev examples it is scored on")
        if self.sweep_seeds and not self.sweep:
            raise ValueError("sweep_seeds: only with a sweep (the seeds its points are trained with)")
        stray = [s for s in self.sweep_seeds if s not in self.seeds]
        if stray or len(set(self.sweep_seeds)) != len(self.sweep_seeds):
            raise ValueError(f"sweep_seeds: expected distinct seeds out of seeds {self.seeds}, got {self.sweep_seeds}")
        return self

    def seeds_of(self, method: str) -> list[int]:
        """The seeds every run of ``method`` (a label) is planned with before selection: the sweep
        seeds for a sweep point when ``sweep_seeds`` is set, else every seed."""
        swept = {label for labels in self.sweep_labels().values() for label in labels}
        return list(self.sweep_seeds) if self.sweep_seeds and method in swept else list(self.seeds)

    def sweep_labels(self) -> dict[str, list[str]]:
        """Method kind -> the labels of its sweep points (empty without a sweep)."""
        from lorascope.study.sweep import sweep_points

        return sweep_points(self.sweep, {name: self.method_of(name) for name in self.methods})

    @field_validator("tasks", "methods", "seeds")
    @classmethod
    def _non_empty(cls, v: list[str] | list[int]) -> list[str] | list[int]:
        if not v:
            raise ValueError("must list at least one entry")
        if len(set(map(str, v))) != len(v):
            raise ValueError("entries must be distinct")
        return v

    @field_validator("stages")
    @classmethod
    def _stages_in_pipeline_order(cls, v: list[Stage]) -> list[Stage]:
        # The stages run in the order listed, and each reads what the ones before it wrote: a report listed before
        # the training would report nothing, a stage listed twice would run twice.
        if not v:
            raise ValueError("must list at least one stage")
        if len(set(v)) != len(v) or v != sorted(v, key=STAGES.index):
            raise ValueError(f"list each stage once, in the order they run ({', '.join(STAGES)}); got {', '.join(v)}")
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

    @model_validator(mode="after")
    def _task_settings_by_name(self) -> StudyConfig:
        # A key that names no task (a typo, a file path) would drop its settings without a word.
        for where, settings in (("task_train", self.task_train), ("hpo.task_train", self.hpo.task_train)):
            for key in settings:
                if Path(key).suffix in TASK_FILE_SUFFIXES:
                    raise ValueError(f"{where}.{key}: per-task settings are keyed by the task's name "
                                     f"({', '.join(self.tasks)}), not by its file")
                if key not in self.tasks:
                    raise ValueError(f"{where}.{key}: not a task of this study (its tasks: {', '.join(self.tasks)})")
        for key in self.method_train:
            if key not in METHODS and key not in self.variants and key not in self.methods:
                raise ValueError(f"method_train.{key}: neither lora, full nor a name under variants "
                                 f"({', '.join(self.variants) or 'none defined'})")
        return self

    def task_ref(self, task: str) -> str:
        """What reads task ``task`` (a name of ``tasks``): its task file, or the GLUE task's name."""
        return self.task_files.get(task, task)

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
                  dict(task=self.task_ref(task), seed=seed, model=self.model, data_dir=self.data_dir, **identity)]
        return build_config(TrainConfig, *layers, source=f"study '{self.name}' train settings ({task}, {method})")


def _task_identity(entry: str, files: dict[str, str]) -> str:
    """The name of task ``entry`` (a GLUE name or a task file); a task file is added to ``files``."""
    from lorascope.data.tasks import GLUE_TASKS, get_task
    from lorascope.errors import ConfigError

    try:
        spec = get_task(entry)
    except ConfigError as exc:
        raise ValueError(f"tasks: {exc}") from None
    if GLUE_TASKS.get(spec.name) is not spec:
        files[spec.name] = str(Path(entry).resolve())
    return spec.name


def _beside(entry: Any, folder: Path) -> Any:
    """A task file path of a study file, made absolute against the study file's folder."""
    if not isinstance(entry, str) or Path(entry).suffix not in TASK_FILE_SUFFIXES:
        return entry
    path = Path(entry).expanduser()
    return str(path if path.is_absolute() else folder / path)


# The stages that put models on the study's ``device``.
DEVICE_STAGES = ("drift", "weights", "forgetting", "probes")


def load_study(path: str | Path, overrides: dict[str, Any] | None = None, *, here: bool = True) -> StudyConfig:
    """Read and validate a study YAML; every unit's training config is validated too.

    Task files named in the study file (``tasks``, ``probes.probe_tasks``) are found relative to the
    study file, so that a study runs the same from any directory; those in ``overrides`` (the
    command line) relative to the current directory.

    Args:
        here: the study is to run on this machine: a ``device`` it does not have is an error now,
            not when the first analysis starts after hours of training (``study plan`` passes False).
    """
    data = load_yaml(path, what="study file")
    folder = Path(path).resolve().parent
    if isinstance(data.get("tasks"), list):
        data["tasks"] = [_beside(t, folder) for t in data["tasks"]]
    probes = data.get("probes")
    if isinstance(probes, dict) and isinstance(probes.get("probe_tasks"), list):
        probes["probe_tasks"] = [_beside(t, folder) for t in probes["probe_tasks"]]
    cfg = build_config(StudyConfig, data, overrides or {}, source=str(path))
    if here and cfg.device not in ("auto", "cpu") and set(DEVICE_STAGES) & set(cfg.stages):
        from lorascope.models.device import resolve_device

        resolve_device(cfg.device)
    if "hpo" in cfg.stages:
        from lorascope.extras import require

        require("hpo", by="the study's hpo stage")
    for task in cfg.tasks:
        for method in cfg.methods:
            cfg.train_config(task, method, cfg.seeds[0])
            if "hpo" in cfg.stages:
                hpo_config(cfg, task, method)
    return cfg


def hpo_config(cfg: StudyConfig, task: str, method: str) -> HpoConfig:
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
    # Named by the task's name, as the study names everything of a task (a file path would name a GLUE task's too).
    study_name = f"hpo-{task}-{identity['variant'] or kind}-{cfg.model}"
    return build_config(HpoConfig, dict(task=cfg.task_ref(task), method=kind, model=cfg.model, n_trials=h.n_trials,
                                        seed=h.seed, storage=h.storage, train=train, space=space, study_name=study_name),
                        source=f"study '{cfg.name}' hpo settings ({task}, {method})")
