"""A study's sweep: training settings varied per method, each value a method variant of its own, and
the rule, declared before the study runs, that picks the point of each method the verdicts compare.

``sweep: {lora: {lr: [5e-4, 1e-3]}, full: {lr: [5e-5, 1e-4]}}`` replaces ``lora`` and ``full`` in
the study's methods by the variants ``lora_lr0p0005``, ``lora_lr0p001``, ``full_lr5em05`` and
``full_lr0p0001``: each (point, seed) is then a training unit like any other (resumable, sliceable
with ``--only method=…``, a Ray task), and every analysis groups runs by these labels.
"""

from __future__ import annotations

import itertools
from typing import Any

from lorascope.errors import ConfigError


def value_slug(value: Any) -> str:
    """A swept value as part of a variant name (lower-case letters, digits, _): ``0.0005`` ->
    ``0p0005``, ``2.5e-05`` -> ``2p5em05``, ``True`` -> ``true``."""
    text = f"{value:g}" if isinstance(value, float) else str(value).lower()
    return text.replace(".", "p").replace("-", "m").replace("+", "")


def _number(value: Any) -> Any:
    """PyYAML reads ``5e-4`` (no dot) as a string: a swept value that reads as a number is one."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def points_of(name: str, settings: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(label, swept settings) of each point of one swept method, in sweep order (a product over settings)."""
    keys = list(settings)
    out = []
    for combo in itertools.product(*([_number(v) for v in settings[k]] for k in keys)):
        label = "_".join([name, *(f"{k}{value_slug(v)}" for k, v in zip(keys, combo))])
        out.append((label, dict(zip(keys, combo))))
    return out


def check_shape(sweep: dict[str, Any]) -> None:
    """Refuse a sweep that is not method -> setting -> list of values, before anything iterates over it.

    Raises:
        ConfigError: naming the ``sweep.<method>`` or ``sweep.<method>.<setting>`` key at fault.
    """
    for name, settings in sweep.items():
        if settings is None or settings == {}:
            raise ConfigError(f"sweep.{name}: name at least one setting to sweep (e.g. lr: [1e-4, 2e-4])")
        if not isinstance(settings, dict):
            raise ConfigError(f"sweep.{name}: expected a mapping of setting -> values (e.g. lr: [1e-4, 2e-4]), "
                              f"got {settings!r}")
        for key, values in settings.items():
            if not isinstance(values, list):
                raise ConfigError(f"sweep.{name}.{key}: expected a list of at least two values, got {values!r}")


def expand_sweep(methods: list[str], variants: dict[str, dict[str, Any]], sweep: dict[str, dict[str, list[Any]]],
                 base_methods: tuple[str, ...]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The study's methods and variants with every swept method replaced by one variant per point.

    Args:
        methods: the study's ``methods`` (``lora``, ``full`` or variant names).
        variants: the study's named variants, name -> {method, settings}.
        sweep: method name -> setting -> the values it takes (a product over several settings).
        base_methods: the plain method names (``lora``, ``full``).

    Returns:
        (methods, variants): the sweep's points in place of each swept method, in value order.

    Raises:
        ConfigError: naming the ``sweep.<method>.<setting>`` key at fault.
    """
    out_methods: list[str] = []
    out_variants = dict(variants)
    sweep = {name: {k: [_number(v) for v in vs] if isinstance(vs, list) else vs for k, vs in (settings or {}).items()}
             for name, settings in sweep.items()}
    for name, settings in sweep.items():
        if name not in methods:
            raise ConfigError(f"sweep.{name}: not one of the study's methods ({', '.join(methods)})")
        if not settings:
            raise ConfigError(f"sweep.{name}: name at least one setting to sweep (e.g. lr: [1e-4, 2e-4])")
        for key, values in settings.items():
            if not isinstance(values, list) or len(values) < 2:
                raise ConfigError(f"sweep.{name}.{key}: expected a list of at least two values, got {values!r}")
            if len({repr(v) for v in values}) != len(values):
                raise ConfigError(f"sweep.{name}.{key}: values must be distinct, got {values}")
            if key in ("method", "variant", "task", "seed", "model"):
                raise ConfigError(f"sweep.{name}.{key}: set by the study, not swept")
    for name in methods:
        if name not in sweep:
            out_methods.append(name)
            continue
        base = dict(variants.get(name, {"method": name if name in base_methods else None}))
        for point, swept in points_of(name, sweep[name]):
            if point in out_variants:
                raise ConfigError(f"sweep.{name}: its point '{point}' is also a variant's name under variants")
            out_variants[point] = {**base, **swept}
            out_methods.append(point)
        out_variants.pop(name, None)
    return out_methods, out_variants


def sweep_points(sweep: dict[str, dict[str, list[Any]]], kinds: dict[str, str]) -> dict[str, list[str]]:
    """Method kind (``lora``/``full``) -> the labels of its sweep points, in sweep order.

    Args:
        sweep: the study's sweep.
        kinds: every label of the expanded study -> its method kind.
    """
    points: dict[str, list[str]] = {}
    for name, settings in sweep.items():
        for label, _ in points_of(name, settings):
            if label in kinds:
                points.setdefault(kinds[label], []).append(label)
    return points


def select_point(labels: list[str], selection: dict[str, list[dict[str, Any] | None]]) -> dict[str, Any]:
    """The declared rule: of one method's sweep points, the one whose runs' checkpoint-selection value
    is best on average over seeds — measured on the selection split carved from the training data
    (``selection_split``), never on the dev examples the verdicts are scored on.

    Args:
        labels: the method's points.
        selection: label -> each finished run's ``selection`` record (``split``, ``by``, ``metric``,
            ``best_value``); None for a run without one.

    Returns:
        {"label": the chosen point, "by": loss | metric, "values": label -> mean value, "rule": text}.

    Raises:
        ConfigError: a run chose on dev (no ``selection_split``) or points were selected differently.
    """
    means: dict[str, float] = {}
    by_seen = set()
    for label in labels:
        records = [r for r in selection.get(label, []) if r is not None]
        if not records:
            continue
        for r in records:
            if r.get("split") != "selection_split":
                raise ConfigError(f"sweep: the runs of '{label}' chose their checkpoint on {r.get('split', 'dev')}; "
                                  "the sweep's rule needs train.selection_split so dev chooses nothing")
            by_seen.add(r.get("by", "loss"))
        means[label] = sum(float(r["best_value"]) for r in records) / len(records)
    if not means:
        raise ConfigError(f"sweep: no finished run of {', '.join(labels)} to select from")
    if len(by_seen) != 1:
        raise ConfigError(f"sweep: the points of {', '.join(labels)} were selected by different settings {sorted(by_seen)}")
    by = by_seen.pop()
    best = min(means, key=means.get) if by == "loss" else max(means, key=means.get)  # type: ignore[arg-type]
    rule = (f"the point with the {'lowest' if by == 'loss' else 'highest'} mean selection-split "
            f"{'loss' if by == 'loss' else 'metric'} over seeds")
    return {"label": best, "by": by, "values": means, "rule": rule}

