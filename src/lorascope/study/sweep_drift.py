"""The sweep's part in a study's drift analysis: which pair of points the verdicts compare, and the
points the frontier is drawn through (``lorascope.study.sweep`` declares them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorascope.study.config import StudyConfig
from lorascope.study.sweep import points_of, select_point
from lorascope.study.units import selection_records


def drift_pair_settings(cfg: StudyConfig, task: str, study_folder: Path) -> dict[str, Any]:
    """What a study's drift analysis of ``task`` needs to know of its sweep: the pair of labels the
    verdicts compare (each swept method's point chosen by :func:`select_point` from its finished runs),
    the sweep's points (label -> method and swept value, for the frontier) and the selections made.

    Args:
        cfg: the study.
        task: a task name of the study.
        study_folder: the study's folder.

    Returns:
        {} without a sweep; else ``pair``, ``sweep_points`` and ``selection`` for ``DriftConfig``.

    Raises:
        ConfigError: no finished run of a swept method to select from.
    """
    if not cfg.sweep:
        return {}
    points = frontier_points(cfg)
    selection: dict[str, Any] = {}
    pair: list[str] = []
    for kind in ("lora", "full"):
        own = [label for label, p in points.items() if p["method"] == kind]
        if not own:  # not swept: the method itself, when the study has it
            pair += [kind] if kind in cfg.methods else []
            continue
        chosen = select_point(own, selection_records(cfg, task, study_folder, own)[0])
        selection[kind] = chosen
        pair.append(str(chosen["label"]))
    return {"pair": pair if len(pair) == 2 else None, "sweep_points": points, "selection": selection,
            "sweep_seeds": list(cfg.sweep_seeds) or None}


def frontier_points(cfg: StudyConfig) -> dict[str, dict[str, Any]]:
    """Each sweep point's label -> {"method": lora | full, "setting": the number that orders it}."""
    kinds = {name: cfg.method_of(name) for name in cfg.methods}
    points: dict[str, dict[str, Any]] = {}
    for name, settings in cfg.sweep.items():
        for index, (label, swept) in enumerate(points_of(name, settings)):
            # One swept number orders the points by its value; several settings, or a setting that is
            # not a number (lora_targets), by the point's place in the sweep.
            value = next(iter(swept.values())) if len(swept) == 1 else index
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            points[label] = {"method": kinds[label], "setting": float(value if numeric else index)}
    return points
