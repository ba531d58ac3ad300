"""The study file's keys as a markdown table, rendered from :class:`lorascope.study.config.StudyConfig`.

The README shows this table between ``<!-- study-keys:start -->`` and ``<!-- study-keys:end -->``;
a test compares the two, so the documentation cannot drift from the model that validates study
files. Regenerate it with ``python -m lorascope.study.keys``.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lorascope.metrics import format_significant
from lorascope.report.text import table

START, END = "<!-- study-keys:start -->", "<!-- study-keys:end -->"

_BOUNDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", "≥"), (annotated_types.Lt, "lt", "<"),
           (annotated_types.Le, "le", "≤"))


def _bounds(metadata: list[Any]) -> str:
    """Constraints such as ``Gt(gt=0), Lt(lt=1)`` as `` > 0, < 1``."""
    said = [f"{sign} {format_significant(getattr(m, attr), 6)}" for m in metadata for kind, attr, sign in _BOUNDS if isinstance(m, kind)]
    return " " + ", ".join(said) if said else ""


def type_text(annotation: object) -> str:
    """A field's type as a study file's author reads it: ``int > 0``, ``list of str``, ``one of t, sign-flip``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0]) + _bounds(list(args[1:]))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        named = [type_text(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is list:
        if args and typing.get_origin(args[0]) is typing.Literal:
            return "list, each " + type_text(args[0])
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    """The default as it would be written in YAML (``[1, 16]``, ``null``, ``{}``), or ``required``."""
    if field.is_required():
        return "required"
    # pydantic types default_factory as taking no argument or the validated data; settings use the first form.
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    dumped: str = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    return "`" + dumped.strip().removesuffix("...").strip() + "`"


def _section(annotation: object) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def study_keys_rows(model: type[BaseModel] | None = None, prefix: str = "") -> list[list[str]]:
    """One row per key (``drift.n_samples`` for a key inside a section): key, type, default, meaning."""
    if model is None:
        from lorascope.study.config import StudyConfig

        model = StudyConfig
    rows = []
    for name, field in model.model_fields.items():
        section = _section(field.annotation)
        if section is not None:  # a section's keys, each on its own row
            rows += study_keys_rows(section, f"{prefix}{name}.")
            continue
        rows.append([f"`{prefix}{name}`", type_text(field.annotation) + _bounds(field.metadata), default_text(field),
                     field.description or ""])
    return rows


def study_keys_table() -> str:
    """Every key of a study file as a markdown table (the text between the README's markers)."""
    return table(["key", "type", "default", "meaning"], study_keys_rows())


if __name__ == "__main__":
    print(study_keys_table())
