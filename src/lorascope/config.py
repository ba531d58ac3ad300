"""Typed, validated configuration: YAML files plus ``key=value`` overrides.

Every setting is a field with a help string. Unknown keys and wrong types are errors that name
the key (``ConfigError``), so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from lorascope.errors import ConfigError

ModelT = TypeVar("ModelT", bound="StrictModel")


class StrictModel(BaseModel):
    """Base for every config: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def describe_validation_error(err: ValidationError, source: str = "config") -> str:
    """One line naming each offending key, what was expected, and what was given."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}'")
        else:
            parts.append(f"'{key}': {e['msg']} (got {e.get('input')!r})")
    return f"{source}: " + "; ".join(parts)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``1e-4``, ``true``, ``[a, b]``).

    Dotted keys (``lora.r=16``) become nested dicts.
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{item}': empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override '{item}': value is not valid YAML ({exc.__class__.__name__})") from None
        if isinstance(value, str):
            value = _maybe_number(value)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{p}' is not a section")
        node[parts[-1]] = value
    return out


def _maybe_number(text: str) -> Any:
    # YAML 1.1 reads "1e-4" (no dot) as a string; users mean a number.
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or malformed YAML is a ConfigError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of key: value at the top level")
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def build_config(cls: type[ModelT], *layers: dict[str, Any], source: str = "config") -> ModelT:
    """Validate the merge of ``layers`` (later wins) into ``cls``; errors name the key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    try:
        return cls.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, source)) from None


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    """JSON/YAML-safe dict of a config (paths as strings)."""
    return cfg.model_dump(mode="json")


def diff_configs(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys whose values differ between two resolved configs (dotted paths)."""
    keys = sorted(set(stored) | set(current))
    diffs: list[str] = []
    for k in keys:
        a, b = stored.get(k, "<missing>"), current.get(k, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += diff_configs(a, b, f"{prefix}{k}.")
        elif a != b:
            diffs.append(f"{prefix}{k}: stored {a!r} != current {b!r}")
    return diffs


def dump_yaml(data: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
