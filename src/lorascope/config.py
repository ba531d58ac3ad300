"""Typed, validated configuration: YAML files plus ``key=value`` overrides.

Every setting is a field with a help string. Unknown keys and wrong types are errors that name
the key (``ConfigError``), so a typo never silently falls back to a default. Every config model
also refuses NaN and infinite numbers, and any field named ``seed``, ``*_seed``, ``seeds`` or
``*_seeds`` must hold seeds numpy accepts (0 to 2**32 - 1), checked when the config is built
rather than deep inside a library once an output folder exists.
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from lorascope.errors import ConfigError

ModelT = TypeVar("ModelT", bound="StrictModel")

# numpy's RandomState (and so the Trainer's set_seed) takes seeds in [0, 2**32 - 1].
MAX_SEED = 2**32 - 1
# Longest rendering of an offending value in an error message: the line stays readable.
_MAX_SHOWN = 80
# Values (scalars, lists, mappings, keys) a YAML document may expand to once its aliases are
# followed. The largest study file has a few hundred; a "billion laughs" file of a few hundred
# bytes expands to 10**9 and takes minutes and gigabytes to validate, so it is refused before
# any value is constructed.
MAX_YAML_VALUES = 100_000


def is_seed_field(name: str) -> bool:
    """Whether a config field holds a seed (or a list of seeds) by its name."""
    return name in ("seed", "seeds") or name.endswith(("_seed", "_seeds"))


class StrictModel(BaseModel):
    """Base for every config: unknown keys are errors, assignments are validated.

    NaN and infinite floats are refused (``epochs=inf`` would never end, ``lr=nan`` trains
    nothing), and seed fields are range-checked by name (see :func:`is_seed_field`), so a config
    class gets both without declaring them.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _seed_in_range(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None or not is_seed_field(info.field_name):
            return value
        seeds = value if isinstance(value, (list, tuple)) else [value]
        for seed in seeds:
            if isinstance(seed, int) and not 0 <= seed <= MAX_SEED:
                raise PydanticCustomError("seed_range", "a seed must be an integer from 0 to {max_seed}", {"max_seed": MAX_SEED})
        return value


def describe_validation_error(err: ValidationError, source: str = "config") -> str:
    """One line naming each offending key, what was expected, and what was given."""
    parts = []
    for e in err.errors():
        # "[key]" marks an error in a mapping's key (files: {extra: …}); the key path already names it.
        key = ".".join(str(p) for p in e["loc"] if p != "[key]")
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}'")
        elif e["type"] == "missing":
            parts.append(f"'{key}': Field required")
        elif not key:
            # A check across several keys (a model validator): its message names them.
            parts.append(str(e["msg"]).removeprefix("Value error, "))
        else:
            parts.append(f"'{key}': {e['msg']} (got {_shown(e.get('input'))})")
    return f"{source}: " + "; ".join(parts)


# Renders a container only as deep and as long as the message shows it: ``repr`` of a large
# nested value would be built in full and then cut.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 8, 8, 6, 8
_REPR.maxstring = _REPR.maxother = _MAX_SHOWN


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else _REPR.repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


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
            value = parse_yaml(raw) if raw.strip() else None
        except YamlTooLarge as exc:
            shown = item if len(item) <= _MAX_SHOWN else item[: _MAX_SHOWN - 3] + "..."
            raise ConfigError(f"override '{shown}': refused: {exc.problem}") from None
        except (yaml.YAMLError, RecursionError) as exc:
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


class YamlTooLarge(yaml.MarkedYAMLError):  # type: ignore[misc]  # PyYAML ships no type stubs
    """A YAML document whose aliases expand to more than :data:`MAX_YAML_VALUES` values, or refer to themselves."""


def _expanded_size(root: yaml.Node) -> int:
    """How many values ``root`` stands for with every alias followed, without following them.

    An alias is the very node it names, so the composed document is a graph with shared nodes:
    each node's size is computed once (memoised), which takes time proportional to the file.

    Raises:
        YamlTooLarge: an alias inside the node it names (a document that contains itself).
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YamlTooLarge(None, None, "an alias refers to the node that contains it", node.start_mark)
        open_nodes.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(root)


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type stubs
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last),
    and a document whose aliases expand past :data:`MAX_YAML_VALUES` values (checked on the
    composed nodes, before anything is constructed)."""

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        if _expanded_size(node) > MAX_YAML_VALUES:
            raise YamlTooLarge(None, None, f"its aliases expand to more than {MAX_YAML_VALUES} values", None)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults`: the base class merges; overriding a merged key is the point
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # unhashable keys are left to the base class, which reports them
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return dict(super().construct_mapping(node, deep=deep))


def parse_yaml(text: str) -> Any:
    """YAML text as data, read as :func:`load_yaml` reads a file (safe, unique keys, bounded aliases).

    Raises:
        yaml.YAMLError: malformed text, a duplicate key, or :class:`YamlTooLarge`.
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def read_text_file(path: str | Path, what: str = "config file", error: type[Exception] = ConfigError) -> str:
    """The text of a UTF-8 file (a byte-order mark is allowed); anything else is ``error`` naming the file.

    Args:
        path: The file.
        what: What the file is, for the messages (``task file``, ``study file`` …).
        error: The exception raised for a missing, unreadable or non-UTF-8 file.
    """
    p = Path(path)
    if p.is_dir():
        raise error(f"{p}: is a directory, expected a {what}")
    if not p.is_file():
        raise error(f"{p}: {what} not found")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise error(f"{p}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{p}:{line}: not valid UTF-8 (byte {exc.start}); save the file as UTF-8") from None


def load_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML mapping; a missing, non-UTF-8 or malformed file is a ConfigError naming the file (and line).

    Args:
        path: The YAML file.
        what: What the file is, for the messages (``config file``, ``task file``, ``study file``).
    """
    p = Path(path)
    text = read_text_file(p, what)
    try:
        data = parse_yaml(text)
    except YamlTooLarge as exc:
        raise ConfigError(f"{p}: refused: {exc.problem} (an alias bomb?)") from None
    except RecursionError:  # the composer recurses once per level of nesting
        raise ConfigError(f"{p}: refused: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
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
        elif a != b and not _same_path(a, b):
            diffs.append(f"{prefix}{k}: stored {a!r} != current {b!r}")
    return diffs


def _same_path(a: Any, b: Any) -> bool:
    """Whether two settings are two spellings of one existing file or folder (``runs/x`` from the
    checkout and ``/home/me/checkout/runs/x``): a study rerun with its folder named either way is the
    same study."""
    if not (isinstance(a, str) and isinstance(b, str) and a and b):
        return False
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # either does not exist, or is not a path at all
        return False


def dump_yaml(data: dict[str, Any], path: Path) -> None:
    """Write ``data`` to ``path`` as YAML, keys in their insertion order."""
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def check_report_to(value: str | list[str]) -> str | list[str]:
    """``value`` if the Trainer can log to it here: ``none``, ``all``, an installed integration or a
    list of installed integrations.

    The Trainer itself checks this only once training starts, after the output folder exists.

    Raises:
        ConfigError: naming ``report_to``, the value, and what is accepted or how to install it.
    """
    names = [value] if isinstance(value, str) else list(value)
    if len(names) > 1 and {"none", "all"} & set(names):
        raise ConfigError(f"'report_to': none and all stand alone, not in a list of loggers (got {names})")
    for name in names:
        if name in ("none", "all"):
            continue
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

        if name not in INTEGRATION_TO_CALLBACK:
            raise ConfigError(f"'report_to': unknown logger {name!r} (expected none, all or one of {', '.join(INTEGRATION_TO_CALLBACK)})")
        if name not in get_available_reporting_integrations():  # type: ignore[no-untyped-call]
            raise ConfigError(f"'report_to': logger {name!r} is not installed here (pip install {name.replace('_', '-')}, or report_to=none)")
    return value
