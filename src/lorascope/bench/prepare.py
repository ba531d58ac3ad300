"""Benchmark set-up: device, base model, adapters (given or synthetic) and the task behind each adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lorascope.bench.config import BenchConfig
from lorascope.bench.synthetic import make_synthetic_adapters
from lorascope.data import GLUE_TASKS, get_task, with_label_set
from lorascope.data.tasks import TaskSpec
from lorascope.errors import ConfigError
from lorascope.models.base_recipe import BaseModelSpec, open_base
from lorascope.models.folders import check_adapter_fits, check_model_folder
from lorascope.serve.device import resolve_device
from lorascope.serve.sources import AdapterSource, head_width, resolve_adapter, resolve_full_model, shared_label_names

SYNTHETIC_FOLDER = "synthetic_adapters"


@dataclass
class Prepared:
    """Everything the measurements run on.

    Attributes:
        device: Where every model runs.
        base: Recipe for fresh base copies.
        adapters: The adapters, in the order strategies take them (first = the single-adapter one).
        tasks: Adapter name -> task whose dev set supplies its requests.
        full_model: Model folder of a real full fine-tuning run, or None (the base stands in).
        full_info: That run's metrics.json ({} when none).
        synthetic: Whether the adapters are synthetic.
        notes: Caveats to carry into bench.json.
    """

    device: torch.device
    base: BaseModelSpec
    adapters: list[AdapterSource]
    tasks: dict[str, TaskSpec]
    full_model: Path | None
    full_info: dict[str, Any]
    synthetic: bool
    notes: list[str]


def _task_of(source: AdapterSource, cfg: BenchConfig) -> TaskSpec:
    """The task whose dev set feeds an adapter: ``adapter_tasks`` if given, else what its run recorded."""
    if source.name in cfg.adapter_tasks:
        return _fitting_task(source, with_label_set(get_task(cfg.adapter_tasks[source.name]), cfg.data_dir))
    if source.task_spec is not None:
        return source.task_spec
    if source.name.lower().replace("-", "").replace("_", "") in GLUE_TASKS:
        return get_task(source.name)
    raise ConfigError(
        f"adapter '{source.name}' ({source.folder}): its task is unknown (a bare adapter folder without a run's "
        f"metrics.json); set adapter_tasks.{source.name}=<task name or task YAML file>"
    )


def _fitting_task(source: AdapterSource, spec: TaskSpec) -> TaskSpec:
    """``spec``, given as the adapter's task in ``adapter_tasks``, when it fits the adapter: as many labels
    as its head, and single texts or pairs as it was trained on (where its run recorded that).

    Raises:
        ConfigError: naming the setting, the task's shape and the adapter's.
    """
    where = f"adapter_tasks.{source.name}: task '{spec.name}'"
    width = len(source.label_names) if source.label_names else head_width(source.folder)
    if width is not None and width != spec.num_labels:
        raise ConfigError(f"{where} has {spec.num_labels} labels, but adapter '{source.name}' ({source.folder}) has a "
                          f"{width}-label head; give the task it was trained on")
    trained = source.task_spec
    if trained is not None and trained.is_pair != spec.is_pair:
        shape = {True: "sentence pairs", False: "single texts"}
        raise ConfigError(f"{where} takes {shape[spec.is_pair]}, but adapter '{source.name}' was trained on "
                          f"{shape[trained.is_pair]} ('{trained.name}'); give the task it was trained on")
    return spec


def prepare(cfg: BenchConfig, out: Path) -> Prepared:
    """Resolve the device, the base, the adapters (building synthetic ones under ``out``) and their tasks.

    Raises:
        LorascopeError: On an unusable model, adapter, full model or task.
    """
    device = resolve_device(cfg.device)
    notes: list[str] = []
    unknown = sorted(set(cfg.adapter_tasks) - set(cfg.adapters))
    if unknown:
        raise ConfigError(f"adapter_tasks: '{unknown[0]}' is not one of the adapters ({', '.join(cfg.adapters) or 'none given'})")
    if cfg.adapters:
        adapters = [resolve_adapter(name, path) for name, path in cfg.adapters.items()]
        base = open_base(cfg.model, shared_label_names(adapters), cfg.seed)
        skeleton = base.skeleton()
        for a in adapters:
            # Before anything is loaded or timed: PEFT's own failure is a traceback deep in loading.
            check_adapter_fits(a.folder, skeleton, f"adapter '{a.name}' ({a.folder})", cfg.model)
            if a.base_model_source and a.base_model_source != base.source:
                notes.append(f"adapter '{a.name}' was trained on {a.base_model_source}, benchmarked on {base.source}")
        synthetic = False
    else:
        for task in cfg.synthetic_tasks:
            get_task(task)
        base = open_base(cfg.model, get_task(cfg.synthetic_tasks[0]).label_names, cfg.seed)
        adapters = make_synthetic_adapters(
            base, cfg.synthetic_tasks, cfg.synthetic_adapters, out / SYNTHETIC_FOLDER,
            r=cfg.lora_r, alpha=cfg.lora_alpha, targets=cfg.lora_targets, seed=cfg.seed, device=device,
        )
        synthetic = True
        notes.append("synthetic adapters (random B and heads): latency depends on shapes, not values")
    full_model: Path | None = None
    full_info: dict[str, Any] = {}
    if cfg.full_model:
        full_model, full_info = resolve_full_model(cfg.full_model)
        check_model_folder(full_model, cfg.full_model)  # safetensors weights only, before any is loaded
    else:
        notes.append("full_ft: the base model stands in for a fully fine-tuned model (same shapes, same cost)")
    if base.random_init:
        notes.append(f"base model: {base.source}")
    tasks = {a.name: _task_of(a, cfg) for a in adapters}
    return Prepared(device, base, adapters, tasks, full_model, full_info, synthetic, notes)
