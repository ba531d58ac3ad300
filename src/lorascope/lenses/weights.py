"""``run_weight_lens``: the weight lens over every finished run under a folder, compared across seeds.

For like-for-like comparison the same matrices are measured for every method: the ones the LoRA
runs adapted (e.g. every layer's q and v projections). A LoRA run's fine-tuned matrix is
``W₀ + scale · B · A`` (DoRA: rescaled per row) from its adapter folder; a full run's is read from
its model folder. With several LoRA variants adapting different matrices (q/v, all linear
layers), full fine-tuning is summarised on each variant's own matrices for that comparison.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from lorascope.artifacts import write_json
from lorascope.errors import ConfigError, DataError
from lorascope.lenses.compare import compare_variants
from lorascope.lenses.config import WeightLensConfig
from lorascope.run_folder import RunFolder, RunRecord
from lorascope.variants import primary_label
from lorascope.weight_update import count_intruders, dora_delta, lora_delta, matrix_update

PEFT_PREFIX = "base_model.model."
MEASURES = ("relative_update", "stable_rank", "entropy_rank", "intruders")
_LAYER = re.compile(r"\.(?:layers|layer|h|blocks)\.(\d+)\.")


def adapter_updates(run: RunFolder, base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{parameter name of the base: ΔW [out, in]}`` for every matrix a LoRA run adapted, as PEFT
    merges it (LoRA, rsLoRA or DoRA).

    Args:
        base: the base's matrices by name (DoRA's update depends on them).

    Raises:
        ConfigError: an adapter folder that is not one lorascope reads (its config malformed, its
            weights pickled, truncated or damaged), or one this lens cannot turn into ΔW exactly
            (per-module alpha).
    """
    from lorascope.models.weights import ADAPTER_WEIGHTS, check_adapter_folder, read_safetensors

    # The same checks as every other reader of a run's adapter (drift, serving), same messages.
    config = check_adapter_folder(run.adapter_dir)
    if config.get("alpha_pattern"):
        raise ConfigError(f"{run.adapter_dir}: per-module lora_alpha (alpha_pattern) is not supported by the weight lens")
    tensors: dict[str, np.ndarray] = read_safetensors(run.adapter_dir / ADAPTER_WEIGHTS, "np")
    scaling = dict(alpha=float(config["lora_alpha"]), rslora=bool(config.get("use_rslora")))
    out = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[: -len(".lora_A.weight")]
        b = tensors[module + ".lora_B.weight"]
        name = module.removeprefix(PEFT_PREFIX) + ".weight"
        if config.get("use_dora"):
            if name not in base:
                raise DataError(f"{run.adapter_dir}: adapts {name}, which the base does not have; is it the runs' base?")
            out[name] = dora_delta(base[name], a, b, tensors[module + ".lora_magnitude_vector"], rank=a.shape[0],
                                   **scaling)
        else:
            out[name] = lora_delta(a, b, rank=a.shape[0], **scaling)
    return out


def full_matrices(run: RunFolder, names: list[str]) -> dict[str, np.ndarray]:
    """``{name: W₁}`` read from a full fine-tuning run's model folder (safetensors, possibly sharded).

    Raises:
        ConfigError: a model folder that is not one lorascope reads (pickled, truncated or damaged weights).
        DataError: a matrix in ``names`` that the folder does not hold.
    """
    from lorascope.models.weights import check_model_folder, model_weight_files, read_safetensors

    check_model_folder(run.model_dir, str(run.model_dir))
    found: dict[str, np.ndarray] = {}
    for path in model_weight_files(run.model_dir):
        found.update(read_safetensors(path, "np", set(names)))
    missing = sorted(set(names) - set(found))
    if missing:
        raise DataError(f"{run.model_dir}: no weights named {missing[0]} (and {len(missing) - 1} more)")
    return found


def base_matrices(base: str, label_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every 2-D parameter of the base classifier, by the names its fine-tuned copies use."""
    from lorascope.models.load import load_classifier

    loaded = load_classifier(base, label_names, seed=0)
    return {n: p.detach().float().numpy() for n, p in loaded.model.named_parameters() if p.ndim == 2}


def layer_of(name: str) -> int | None:
    """The block index in a parameter name (``model.layers.3.self_attn.q_proj.weight`` -> 3)."""
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def _run_summary(per_matrix: dict[str, Any], cfg: WeightLensConfig) -> dict[str, Any]:
    values = list(per_matrix.values())
    sims = [s for v in values for s in v["intruder_similarity"]]
    return {
        "matrices": len(values),
        "relative_update": float(np.mean([v["relative_update"] for v in values])),
        "stable_rank": float(np.mean([v["stable_rank"] for v in values])),
        "entropy_rank": float(np.mean([v["entropy_rank"] for v in values])),
        "intruders": int(sum(v["intruders"] for v in values)),
        "intruders_by_epsilon": {f"{e:g}": count_intruders(np.asarray(sims), e) for e in cfg.epsilon_sweep},
    }


def run_weight_lens(cfg: WeightLensConfig, out: Path | str) -> dict[str, Any]:
    """Measure every finished run under ``cfg.runs`` and write ``<out>/weights.json``.

    Returns:
        ``{"config", "matrices": [names], "matrices_by_variant": {label: [names]},
        "runs": [{run, method (the label), seed, summary, per_matrix, summary_by_variant (full runs)}],
        "comparison": {primary, seeds, measures: {measure: {lora_mean, lora_sd, lora_n, full_..., paired_t,
        sign_flip}}, variants: {label: {seeds, measures}}}}``.

    Raises:
        DataError: no finished runs, or no LoRA run to say which matrices were adapted.
    """
    records: list[tuple[RunFolder, RunRecord]] = [(r, r.record()) for r in RunFolder.finished_under(cfg.runs)]
    records = [(r, m) for r, m in records if m.ok and cfg.task in (None, m.task)]
    if not records:
        which = f"'{cfg.task}' " if cfg.task else ""
        raise DataError(f"{cfg.runs}: no finished {which}training runs (expected */metrics.json with status ok)")
    label_sets = {tuple(m.label_names or ()) for _, m in records}
    if len(label_sets) != 1:
        raise DataError(f"{cfg.runs}: holds runs of tasks with different labels; give the runs of one task")
    if not any(m.method == "lora" for _, m in records):
        raise DataError(f"{cfg.runs}: no finished LoRA run; the weight lens measures the matrices LoRA adapted")
    base = base_matrices(cfg.base, label_sets.pop())
    lora_updates = {r.name: adapter_updates(r, base) for r, m in records if m.method == "lora"}
    methods = {m.label: str(m.method) for _, m in records}
    # The matrices each LoRA variant adapted; full fine-tuning is measured on each variant's own set.
    names_of = {label: sorted(set().union(*(set(lora_updates[r.name]) for r, m in records if m.label == label)))
                for label, method in methods.items() if method == "lora"}
    names = sorted(set().union(*names_of.values()))
    unknown = [n for n in names if n not in base]
    if unknown:
        raise DataError(f"base '{cfg.base}': has no matrix {unknown[0]} that the LoRA runs adapted; is it their base?")
    primary = cfg.pair[0] if cfg.pair and cfg.pair[0] in names_of else primary_label(methods) or next(iter(names_of))
    runs = []
    for run, record in records:
        if record.method == "lora":
            tuned = {n: base[n] + d for n, d in lora_updates[run.name].items()}
        else:
            tuned = full_matrices(run, names)
        per_matrix = {n: asdict(matrix_update(base[n], tuned[n], top_k=cfg.top_k, epsilon=cfg.epsilon))
                      for n in names if n in tuned}
        for n, v in per_matrix.items():
            v["layer"] = layer_of(n)
        entry = {"run": run.name, "method": record.label, "seed": record.seed,
                 "summary": _run_summary({n: per_matrix[n] for n in names_of.get(record.label, names_of[primary])}, cfg),
                 "per_matrix": per_matrix}
        if record.method == "full":
            entry["summary_by_variant"] = {label: _run_summary({n: per_matrix[n] for n in own}, cfg)
                                           for label, own in names_of.items()}
        runs.append(entry)
    runs_for = {label: [{**r, "summary": r["summary_by_variant"][label]} if "summary_by_variant" in r else r for r in runs]
                for label in names_of}
    result = {"config": cfg.model_dump(), "matrices": names, "matrices_by_variant": names_of, "runs": runs,
              "comparison": compare_variants(runs, MEASURES, methods, runs_for, pair=cfg.pair)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "weights.json", result)
    return result
