"""Where adapters and full models come from: run folders, adapter folders, and what they say about themselves.

A LoRA training run (``lorascope train``) is ``<run>/adapter/`` (a PEFT folder) plus
``<run>/metrics.json`` (task, label names, base model); a full run is ``<run>/model/`` plus the same
``metrics.json``. A bare PEFT folder carries no label names, so lorascope writes a small sidecar,
``lorascope_adapter.json``, beside the adapters it makes itself (synthetic ones); otherwise the
``metrics.json`` of the folder's parent is used when the folder is a run's ``adapter/``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorascope.data.tasks import TaskSpec, recorded_task, task_record
from lorascope.errors import LorascopeError
from lorascope.models.folders import check_adapter_folder
from lorascope.run_folder import RunFolder

SIDECAR = "lorascope_adapter.json"
ADAPTER_CONFIG = "adapter_config.json"
# Letters, digits, '_' and '-': safe in URLs, file names and CSV cells, and never a path.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
WEIGHT_SUFFIXES = (".safetensors",)


@dataclass(frozen=True)
class AdapterSource:
    """A PEFT adapter folder and what is known about it.

    Attributes:
        name: The name it is served and reported under.
        folder: The PEFT adapter folder (holds ``adapter_config.json``).
        task: Task it was trained for, or None when unknown.
        label_names: Label id -> name, or None when unknown (then ``LABEL_<i>``).
        base_model_source: The base model it was trained on, when recorded.
        origin: ``"run"``, ``"adapter"`` or ``"synthetic"``.
        task_spec: The task itself (columns, files, single or pair), when the run recorded it
            or the task is a GLUE task; None when unknown.
    """

    name: str
    folder: Path
    task: str | None
    label_names: tuple[str, ...] | None
    base_model_source: str | None
    origin: str
    task_spec: TaskSpec | None = None


def check_adapter_name(name: object, error: type[Exception] = LorascopeError) -> str:
    """Return ``name`` if it is a valid adapter name, else raise ``error`` saying what is allowed."""
    # fullmatch: '$' in match() would also accept a name ending in a newline.
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise error(f"adapter name {name!r}: use 1 to 64 letters, digits, '_' or '-'")
    return name


def parse_named_paths(items: list[str] | None, what: str = "--adapter") -> dict[str, str]:
    """``["sst2=runs/a", ...]`` -> ``{"sst2": "runs/a", ...}``; names validated, duplicates refused."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not path.strip():
            raise LorascopeError(f"{what} {item!r}: expected name=path")
        check_adapter_name(name.strip())
        if name.strip() in out:
            raise LorascopeError(f"{what} {item!r}: name '{name.strip()}' given twice")
        out[name.strip()] = path.strip()
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise LorascopeError(f"{path}: cannot read ({err})") from None
    if not isinstance(data, dict):
        raise LorascopeError(f"{path}: expected a JSON object")
    return data


def _run_info(folder: Path) -> dict[str, Any]:
    """A successful run's record, as written (its task, labels and base)."""
    return RunFolder(folder).successful_record().model_dump()


def resolve_adapter(name: str, path: str | Path) -> AdapterSource:
    """A run folder or PEFT adapter folder -> :class:`AdapterSource`.

    The adapter's files are checked too (``adapter_config.json`` parses, the weights are
    safetensors): this is the one gate every adapter passes, for ``bench``, ``serve`` and the
    server's run-time loading alike.

    Raises:
        LorascopeError: If the path is missing, is a full fine-tuning run, holds no adapter, or
            holds one lorascope will not load (pickled or malformed files).
    """
    source = _locate_adapter(name, path)
    try:
        check_adapter_folder(source.folder)
    except LorascopeError as err:
        raise LorascopeError(f"adapter '{name}': {err}") from None
    return source


def _locate_adapter(name: str, path: str | Path) -> AdapterSource:
    check_adapter_name(name)
    p = Path(path).expanduser()
    if not p.is_dir():
        raise LorascopeError(f"adapter '{name}': {p} is not a folder")
    run = RunFolder(p)
    if RunFolder.holds_run(p) and run.adapter_dir.is_dir():
        return _from_info(name, run.adapter_dir, _run_info(p), "run")
    if RunFolder.holds_run(p) and run.model_dir.is_dir():
        raise LorascopeError(f"adapter '{name}': {p} is a full fine-tuning run, not a LoRA adapter (use it as --full-model)")
    if not (p / ADAPTER_CONFIG).is_file():
        raise LorascopeError(f"adapter '{name}': {p} holds neither adapter/ + metrics.json (a LoRA run) nor {ADAPTER_CONFIG}")
    if (p / SIDECAR).is_file():
        info = _read_json(p / SIDECAR)
        return _from_info(name, p, info, "synthetic" if info.get("synthetic") else "adapter")
    if RunFolder.holds_run(p.parent) and p == RunFolder(p.parent).adapter_dir:
        return _from_info(name, p, _run_info(p.parent), "run")
    return AdapterSource(name, p, None, None, None, "adapter")


def _from_info(name: str, folder: Path, info: dict[str, Any], origin: str) -> AdapterSource:
    labels = info.get("label_names")
    return AdapterSource(
        name=name,
        folder=folder,
        task=info.get("task"),
        label_names=tuple(str(x) for x in labels) if isinstance(labels, list) and labels else None,
        base_model_source=info.get("base_model_source"),
        origin=origin,
        task_spec=recorded_task(info),
    )


def write_sidecar(folder: Path, task: TaskSpec | None, label_names: tuple[str, ...], synthetic: bool) -> None:
    """Record an adapter's task and labels beside its PEFT files."""
    data = {"task": task.name if task else None, "task_spec": task_record(task) if task else None,
            "label_names": list(label_names), "synthetic": synthetic}
    (folder / SIDECAR).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def resolve_full_model(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """A full fine-tuning run folder or model folder -> (model folder, run info or {}).

    Raises:
        LorascopeError: If it is neither.
    """
    p = Path(path).expanduser()
    run = RunFolder(p)
    if RunFolder.holds_run(p) and (run.model_dir / "config.json").is_file():
        return run.model_dir, _run_info(p)
    if (p / "config.json").is_file():
        return p, {}
    if (p / "adapter" / ADAPTER_CONFIG).is_file():
        raise LorascopeError(f"full model {p}: is a LoRA run, not a full fine-tuning run (use it as --adapter)")
    raise LorascopeError(f"full model {p}: neither a full fine-tuning run folder (model/ + metrics.json) nor a model folder")


def folder_bytes(folder: Path, weights_only: bool = False) -> int:
    """Bytes of the files in ``folder`` (recursively); only weight files when ``weights_only``."""
    return sum(
        f.stat().st_size
        for f in folder.rglob("*")
        if f.is_file() and (not weights_only or f.name.endswith(WEIGHT_SUFFIXES))
    )


def head_width(folder: Path) -> int | None:
    """Number of labels of the classification head saved in a PEFT folder, or None if it has none.

    Reads only the safetensors header (shapes), not the tensors.
    """
    path = folder / "adapter_model.safetensors"
    if not path.is_file():
        return None
    from lorascope.models.folders import open_safetensors

    with open_safetensors(path, "pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            if key.endswith(("classifier.weight", "score.weight")):
                return int(f.get_slice(key).get_shape()[0])
    return None


def shared_label_names(adapters: list[AdapterSource], strict: bool = True) -> tuple[str, ...]:
    """Labels for the base head the adapters sit on: the first adapter's known names, else ``LABEL_<i>``.

    Args:
        adapters: The adapters, in order.
        strict: Refuse heads of different widths (PEFT holds every adapter's head on one base
            head shape; the lorascope runtime does not need that).

    Raises:
        LorascopeError: With ``strict``, when the adapters' heads differ in width.
    """
    widths = {a.name: (len(a.label_names) if a.label_names else head_width(a.folder)) for a in adapters}
    known = [w for w in widths.values() if w is not None]
    if strict and len(set(known)) > 1:
        raise LorascopeError(
            f"adapters have heads of different widths ({', '.join(f'{n}: {w}' for n, w in widths.items())}); "
            "PEFT cannot hold them on one base model"
        )
    for a in adapters:
        if a.label_names:
            return a.label_names
    return tuple(f"LABEL_{i}" for i in range(known[0] if known else 2))
