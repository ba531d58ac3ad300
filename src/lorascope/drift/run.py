"""``run_drift``: base vs every fine-tuned run of one task — extract, check, compare, save.

Set-up (find runs, extract or reuse representations) -> controls (a second extraction of the base,
LoRA at init) -> per-run drift -> method summaries, noise floor, paired statistics and verdicts ->
``drift.json`` and a tidy ``layers.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from lorascope.artifacts import Commit, atomic_write
from lorascope.config import config_to_dict
from lorascope.data import get_task
from lorascope.drift.analysis import RunDrift, between_seed_drift, drift_of_run, seed_noise_floor, summarise_method
from lorascope.drift.compare import compare_methods
from lorascope.drift.config import DriftConfig
from lorascope.drift.controls import ZERO_DRIFT_TOLERANCE, ControlResult, align_to, run_controls
from lorascope.drift.frontier import sweep_frontier
from lorascope.drift.record import DriftRecord
from lorascope.drift.robustness import layer_range, robustness_rows, run_dissimilarities
from lorascope.errors import DataError
from lorascope.models.registry import resolve_model
from lorascope.provenance import provenance
from lorascope.represent import Representations, RepresentConfig, run_represent
from lorascope.represent.config import SampleSettings
from lorascope.run_folder import RunFolder, RunRecord
from lorascope.variants import FULL, compared_labels, primary_label

# The zero-drift controls in bf16: two extractions in other batch shapes round differently at
# bf16's unit roundoff (2^-8 ≈ 0.004), which moves CKA by about its square. Measured on MiniLM
# (bf16 autocast, batch 16 vs 8 in another order): 2e-6, twice the float32 tolerance; 1e-4 is
# far above that and far below the drift of any misalignment (of order 1).
BF16_ZERO_DRIFT_TOLERANCE = 1e-4

LAYER_COLUMNS = ["task", "method", "seed", "layer", "cka", "cka_debiased", "cosine", "drift", "drift_debiased", "ci_low", "ci_high"]


def resolve_task(cfg: DriftConfig) -> DriftConfig:
    """``cfg`` with its task set: as given, or the one task that every finished run under ``runs`` records."""
    if cfg.task is not None:
        return cfg
    root = Path(cfg.runs)
    if not root.is_dir():
        raise DataError(f"{root}: runs folder not found")
    by_name: dict[str, Path] = {}
    for run in RunFolder.finished_under(root):
        by_name.setdefault(str(run.record().task), run.path)
    if len(by_name) != 1:
        found = ", ".join(sorted(by_name)) or "none"
        raise DataError(f"{root}: runs of {len(by_name)} tasks ({found}); name one with task=<task>")
    return cfg.model_copy(update={"task": str(next(iter(by_name.values())))})


def _task(cfg: DriftConfig) -> str:
    """``cfg.task`` of a config that :func:`resolve_task` has resolved."""
    assert cfg.task is not None, "resolve_task sets the task"
    return cfg.task


def discover_runs(cfg: DriftConfig) -> tuple[list[tuple[Path, RunRecord]], list[dict[str, str | None]]]:
    """Finished runs of ``cfg.task`` under ``cfg.runs``; failed ones are returned separately."""
    root = Path(cfg.runs)
    if not root.is_dir():
        raise DataError(f"{root}: runs folder not found")
    task = get_task(_task(cfg)).name
    base_source = resolve_model(cfg.base)
    ok: list[tuple[Path, RunRecord]] = []
    skipped: list[dict[str, str | None]] = []
    for run in RunFolder.finished_under(root):
        m = run.record()
        if m.task != task:
            continue
        if not m.ok:
            skipped.append({"run": run.name, "reason": m.reason})
            continue
        if m.base_model_source != base_source:
            raise DataError(f"{run.path}: trained from '{m.base_model_source}', not from base '{cfg.base}'")
        ok.append((run.path, m))
    if not ok:
        raise DataError(f"{root}: no finished '{task}' training runs found (expected */metrics.json with status ok)")
    return ok, skipped


def _represent(cfg: DriftConfig, model: str, path: Path, *, lora_init: bool = False, order_seed: int | None = None,
               batch_size: int | None = None) -> Representations:
    """Extract, or reuse ``path`` when its stored cache key matches (see ``run_represent``)."""
    samples = cfg.model_dump(include=set(SampleSettings.model_fields) - {"batch_size"})
    rc = RepresentConfig(**samples, batch_size=batch_size or cfg.batch_size,
                         task=_task(cfg), model=model, poolings=[cfg.pooling], lora_init=lora_init,
                         order_seed=order_seed, data_dir=cfg.data_dir, device=cfg.device, precision=cfg.precision)
    return run_represent(rc, path)


def extraction_setup(cfg: DriftConfig) -> dict[str, Any]:
    """Where and in which dtype the states are extracted, and the zero-drift controls' tolerance
    there; an absent device fails here, before any model is loaded."""
    import torch

    from lorascope.models.device import compute_dtype, resolve_device

    device = resolve_device(cfg.device)
    dtype = compute_dtype(cfg.precision, device)
    tolerance = ZERO_DRIFT_TOLERANCE if dtype == torch.float32 else BF16_ZERO_DRIFT_TOLERANCE
    return {"device": str(device), "compute_dtype": str(dtype).removeprefix("torch."), "control_tolerance": tolerance}


def _controls(cfg: DriftConfig, base: Representations, reps_dir: Path, tolerance: float) -> list[ControlResult]:
    """The pipeline controls: LoRA at init, and a second, independent extraction of the base in a
    shuffled order with another batch size (compared re-aligned by id, and as extracted); zero
    drift means below ``tolerance``."""
    lora0 = _represent(cfg, cfg.base, reps_dir / "base-lora-init.safetensors", lora_init=True)
    check_aligned(base, lora0, "LoRA at init")
    replica = _represent(cfg, cfg.base, reps_dir / "base-replica.safetensors", order_seed=cfg.data_seed + 1,
                         batch_size=max(1, cfg.batch_size // 2) if cfg.batch_size > 1 else 2)
    as_extracted = replica.states[cfg.pooling]
    aligned = align_to(as_extracted, replica.ids, base.ids, "second base extraction")
    return run_controls(base.states[cfg.pooling], aligned, as_extracted, lora0.states[cfg.pooling], tolerance=tolerance)


def check_aligned(reference: Representations, other: Representations, name: str) -> None:
    """Same ids in the same order and identical token ids, or the comparison is meaningless."""
    if other.ids != reference.ids:
        raise DataError(f"{name}: representations are of different samples than the base's (ids differ)")
    if other.meta.get("input_fingerprint") != reference.meta.get("input_fingerprint"):
        raise DataError(f"{name}: token ids differ from the base's (different tokenizer or max_length)")


def dev_correctness(record: RunRecord) -> tuple[list[str] | None, np.ndarray] | None:
    """Per-example scores on dev whose mean is the record's main metric, from its ``dev_predictions``.

    ``dev_predictions`` is ``{"ids": [dev example id, ...], "pred": [label id, ...], "gold": [label id, ...]}``
    in dev order, of the checkpoint whose dev metrics the record reports. For accuracy the scores are
    each example's 0/1 correctness; for a metric that is not a mean over examples (F1, Matthews
    correlation), its jackknife pseudo-values (``lorascope.stats.jackknife``).

    Returns:
        (ids or None, float array [n_dev]), or None when the record has no usable predictions or no
        known main metric.
    """
    from lorascope.metrics import METRICS
    from lorascope.stats.jackknife import pseudo_values

    preds = getattr(record, "dev_predictions", None) or (record.model_extra or {}).get("dev_predictions")
    if not isinstance(preds, dict) or record.main_metric not in METRICS:
        return None
    pred, gold = np.asarray(preds.get("pred", [])), np.asarray(preds.get("gold", []))
    if pred.ndim != 1 or pred.size < 2 or pred.shape != gold.shape:
        return None
    ids = preds.get("ids")
    if record.main_metric == "accuracy":
        scores = (pred == gold).astype(float)
    else:
        n_labels = len(record.label_names or []) or int(max(pred.max(), gold.max())) + 1
        scores = pseudo_values(METRICS[record.main_metric], pred, gold, n_labels)
    return (None if ids is None else [str(i) for i in ids]), scores


def _aligned_correctness(records: list[RunRecord]) -> tuple[list[np.ndarray | None], str]:
    """Each run's per-example correctness, or None for all of them with the reason, unless every run
    has it for the same dev examples in the same order (a comparison across runs needs all of them)."""
    found = [dev_correctness(m) for m in records]
    if not found:
        return [], ""
    if any(f is None for f in found):
        return [None] * len(records), ("not every run stores per-example dev predictions (dev_predictions in "
                                      "metrics.json): metric comparisons treat the dev examples as fixed")
    ids = [f[0] for f in found if f is not None]
    if any(i != ids[0] for i in ids):
        return [None] * len(records), "the runs' per-example predictions are of different dev examples: not used"
    return [f[1] if f is not None else None for f in found], ""


def run_drift(cfg: DriftConfig, out: Path | str, *, overwrite: bool = False) -> DriftRecord:
    """Drift of every finished run under ``cfg.runs`` from the base, committed to ``out``: ``drift.json``
    (the :class:`~lorascope.drift.record.DriftRecord` returned), ``layers.csv`` and the representation cache ``reps/``,
    which a redone analysis reuses (each file is keyed by its model's weights and the extraction).
    Rerun with the same settings on the same runs (none retrained, added or removed), it returns the
    stored record without recomputing.

    Raises:
        ConfigError: ``out`` was made with other settings (unless ``overwrite``).
        DataError: no runs to compare, misaligned extractions.
    """
    cfg = resolve_task(cfg)
    unit = Commit(Path(out), config_to_dict(cfg), overwrite=overwrite, keep=["reps"],
                  inputs=RunFolder.fingerprint_under(cfg.runs))
    if unit.done():
        return DriftRecord.read(Path(out) / DriftRecord.FILE)
    result = _drift_into(cfg, unit.begin())  # an exception leaves the partial, to resume
    unit.complete()
    return result


def _drift_into(cfg: DriftConfig, out: Path) -> DriftRecord:
    extraction = extraction_setup(cfg)
    reps_dir = out / "reps"
    runs, skipped = discover_runs(cfg)
    base = _represent(cfg, cfg.base, reps_dir / "base.safetensors")
    all_states = base.states[cfg.pooling]
    controls = _controls(cfg, base, reps_dir, extraction["control_tolerance"])
    first = layer_range(cfg.layers, int(all_states.shape[0])).start
    base_states = all_states[first:]  # the layers the verdicts average

    spec = get_task(_task(cfg))
    per_run: list[RunDrift] = []
    states_by_method: dict[str, dict[int, np.ndarray]] = {}
    robustness: list[dict[str, Any]] = []
    settings: dict[str, dict[str, Any]] = {}
    correct, dev_examples_note = _aligned_correctness([m for _, m in runs])
    for (folder, m), dev_correct in zip(runs, correct):
        reps = _represent(cfg, str(folder), reps_dir / f"{folder.name}.safetensors")
        check_aligned(base, reps, str(folder))
        tuned = reps.states[cfg.pooling]
        per_run.append(drift_of_run(base_states, tuned[first:], method=m.label, seed=int(m.seed or 0),
                                    metric=m.main_value, n_resamples=cfg.bootstrap, learning=m.learning_check,
                                    dev_correct=dev_correct, first_layer=first))
        states_by_method.setdefault(m.label, {})[int(m.seed or 0)] = tuned[first:]
        if cfg.robustness:
            robustness.append({"method": m.label, "seed": int(m.seed or 0),
                               "measures": run_dissimilarities(all_states, tuned, cfg.layers)})
        settings.setdefault(m.label, RunFolder(folder).method_settings())

    methods = sorted({r.method for r in per_run})
    kinds = {label: str(v["method"]) for label, v in settings.items()}
    # A sweep compares the point of each method its declared rule selected; otherwise lora (or the
    # first LoRA variant) and every other label are compared with full.
    primary: str | None
    primary, reference = cfg.pair if cfg.pair else (primary_label(kinds), FULL)
    missing = [label for label in cfg.pair or [] if label not in kinds]
    if missing:
        raise DataError(f"{cfg.runs}: no finished '{spec.name}' runs of {', '.join(missing)} to compare")

    def compare(label: str) -> dict[str, Any]:
        return compare_methods([r for r in per_run if r.method == label], [r for r in per_run if r.method == reference],
                               n_tasks=cfg.n_tasks, alpha=cfg.alpha, margin=cfg.margin,
                               min_reduction=cfg.min_reduction, test=cfg.test, family=cfg.family)

    if cfg.pair:
        comparisons = {cfg.pair[0]: compare(cfg.pair[0])}  # cfg.pair[0] is primary
    else:
        comparisons = {label: compare(label) for label in compared_labels(kinds) if FULL in kinds}
    n = int(base_states.shape[1])
    record = DriftRecord.create(**{
        "task": spec.name,
        "base": cfg.base,
        "pooling": cfg.pooling,
        "n_samples": n,
        "n_samples_note": (f"{cfg.n_samples} samples were asked for; the split has {n}, all of them are used"
                           if n < cfg.n_samples else ""),
        "n_layers": int(all_states.shape[0]),
        "layers": {"verdicts": cfg.layers, "averaged": list(range(first, int(all_states.shape[0])))},
        "dev_examples_note": dev_examples_note,
        "extraction": extraction,
        "sample_ids": base.ids,
        "controls": [c.to_dict() for c in controls],
        "runs": [r.to_dict() for r in per_run],
        "skipped_runs": skipped,
        "methods": {meth: summarise_method([r for r in per_run if r.method == meth]) for meth in methods},
        "noise_floor": {meth: seed_noise_floor([r for r in per_run if r.method == meth]) for meth in methods},
        "between_seed_drift": {meth: between_seed_drift(states_by_method[meth]) for meth in methods},
        "variants": settings,
        "primary": primary,
        "comparison": comparisons[primary] if primary in comparisons else compare(primary or "lora"),
        "comparisons": comparisons,
        **({"robustness": {"pair": [primary, reference], "runs": robustness,
                           "rows": robustness_rows(robustness, str(primary), reference, cfg.layers)}}
           if cfg.robustness and primary else {}),
        **({"frontier": sweep_frontier(per_run, cfg.sweep_points, seeds=cfg.sweep_seeds), "selection": cfg.selection} if cfg.sweep_points else {}),
        "config": config_to_dict(cfg),
        "provenance": provenance(),
    })
    record.write(out)
    write_layers_csv(out / "layers.csv", spec.name, per_run)
    return record


def write_layers_csv(path: Path, task: str, runs: list[RunDrift]) -> None:
    """Write every run's per-layer drift rows of ``task`` to ``path`` (atomically), with the ``LAYER_COLUMNS`` columns."""
    with atomic_write(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LAYER_COLUMNS)
        w.writeheader()
        for r in runs:
            for row in r.layers:
                w.writerow({"task": task, "method": r.method, "seed": r.seed, **row})
