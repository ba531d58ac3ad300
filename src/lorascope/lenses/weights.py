"""``run_weight_lens``: the weight lens over every finished run under a folder, compared across seeds.

Two scopes, each named in the result (``scope``):

- **Like for like**: the matrices the LoRA runs adapted (e.g. every layer's q and v projections),
  measured for every method. A LoRA run's fine-tuned matrix is ``W₀ + scale · B · A`` (DoRA:
  rescaled per row) from its adapter folder; a full run's is read from its model folder. With
  several LoRA variants adapting different matrices (q/v, all linear layers), full fine-tuning is
  summarised on each variant's own matrices for that comparison. Every measure that needs an SVD
  (stable rank, entropy rank, intruders, intruders at a matched size) reads these matrices only.
- **Whole model**: every 2-D matrix of the pretrained backbone, which full fine-tuning moves
  all of: the relative update of all of them together, ``relative_update_whole`` (and
  ``relative_update_whole_without_embeddings``). LoRA's ΔW there is its merged update on the
  matrices it adapted and exactly zero elsewhere.

The plain intruder count grows with the size of the update, so it is also taken at one matched
size (``intruders_matched``: each like-for-like ΔW rescaled to a common ‖ΔW‖_F/‖W₀‖_F, see
:func:`matched_size` and :func:`lorascope.weight_update.matched_intruders`).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import numpy as np

from lorascope.artifacts import Commit
from lorascope.errors import ConfigError, DataError
from lorascope.lenses.compare import compare_variants
from lorascope.lenses.config import WeightLensConfig
from lorascope.lenses.records import WeightsRecord
from lorascope.run_folder import RunFolder, RunRecord
from lorascope.variants import FULL, primary_label
from lorascope.weight_update import count_intruders, dora_delta, left_singular_vectors, lora_delta, matched_intruders, matrix_update
from lorascope.weight_update.scope import describe_matrices, layer_of, matrix_type

PEFT_PREFIX = "base_model.model."
MEASURES = ("relative_update", "stable_rank", "entropy_rank", "intruders", "intruders_matched", "relative_update_whole",
            "relative_update_whole_without_embeddings")
# Which matrices each compared measure reads: those LoRA adapted, the whole backbone, or it without its embeddings.
MEASURE_SCOPE = {"relative_update": "like_for_like", "stable_rank": "like_for_like", "entropy_rank": "like_for_like",
                 "intruders": "like_for_like", "intruders_matched": "like_for_like",
                 "relative_update_whole": "whole_model",
                 "relative_update_whole_without_embeddings": "whole_model_without_embeddings"}


class LoraScaling(TypedDict):
    """How an adapter's update is scaled: the keyword arguments of ``lora_delta`` and ``dora_delta``."""

    alpha: float
    rslora: bool


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
    from lorascope.models.folders import ADAPTER_WEIGHTS, check_adapter_folder, read_safetensors

    # The same checks as every other reader of a run's adapter (drift, serving), same messages.
    config = check_adapter_folder(run.adapter_dir)
    if config.get("alpha_pattern"):
        raise ConfigError(f"{run.adapter_dir}: per-module lora_alpha (alpha_pattern) is not supported by the weight lens")
    tensors: dict[str, np.ndarray] = read_safetensors(run.adapter_dir / ADAPTER_WEIGHTS, "np")
    if config.get("lora_alpha") is None:
        raise ConfigError(f"{run.adapter_dir}/adapter_config.json: no 'lora_alpha' (the update's scale is alpha / r)")
    scaling: LoraScaling = {"alpha": float(config["lora_alpha"]), "rslora": bool(config.get("use_rslora"))}
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
    from lorascope.models.folders import check_model_folder, model_weight_files, read_safetensors

    check_model_folder(run.model_dir, str(run.model_dir))
    found: dict[str, np.ndarray] = {}
    for path in model_weight_files(run.model_dir):
        found.update(read_safetensors(path, "np", set(names)))
    missing = sorted(set(names) - set(found))
    if missing:
        raise DataError(f"{run.model_dir}: no weights named {missing[0]} (and {len(missing) - 1} more)")
    return found


class BaseWeights(NamedTuple):
    """The base's weights as the lens reads them.

    Attributes:
        matrices: every 2-D parameter of the base classifier, ``{name: W₀ [out, in]}`` (float32), by
            the names its fine-tuned copies use.
        backbone: the names of those in the pretrained backbone, sorted: the whole-model scope.
        embeddings: the backbone's embedding matrices (token embeddings, and position and
            token-type embeddings where the model has them).
        head: the 2-D parameters outside the backbone: the classification head, initialised afresh
            for the task, so without a pretrained counterpart to measure an update from.
    """

    matrices: dict[str, np.ndarray]
    backbone: list[str]
    embeddings: list[str]
    head: list[str]


def base_weights(base: str, label_names: tuple[str, ...], device: str = "cpu") -> BaseWeights:
    """Every 2-D parameter of the base classifier, and which of them form the pretrained backbone.

    The backbone is the pretrained model the classifier wraps (``model.…`` for Llama, ``bert.…``
    for BERT: ``base_model_prefix``); what lies outside it is the task's head.

    Args:
        device: where the base is loaded (a device setting); its matrices are returned on the CPU.
    """
    import torch

    from lorascope.models.load import load_classifier

    model = load_classifier(base, label_names, seed=0, device=device).model
    matrices = {n: p.detach().float().cpu().numpy() for n, p in model.named_parameters() if p.ndim == 2}
    prefix = f"{getattr(model, 'base_model_prefix', '') or ''}."
    if prefix != "." and any(n.startswith(prefix) for n in matrices):
        backbone = sorted(n for n in matrices if n.startswith(prefix))
    else:  # a classifier without the usual wrapping: its head modules have the names PEFT trains in full
        backbone = sorted(n for n in matrices if n.split(".")[0] not in ("classifier", "score"))
    embedding_modules = {m for m, module in model.named_modules() if isinstance(module, torch.nn.Embedding)}
    embeddings = [n for n in backbone if n.removesuffix(".weight") in embedding_modules]
    return BaseWeights(matrices, backbone, embeddings, sorted(set(matrices) - set(backbone)))


def _squared_norm(w1: np.ndarray, w0: np.ndarray | None = None) -> float:
    """‖W₁ − W₀‖_F² (‖W₁‖_F² without ``w0``), summed in float64 whatever the arrays' dtype."""
    d = np.asarray(w1, dtype=np.float64) if w0 is None else np.subtract(w1, w0, dtype=np.float64)
    flat = d.ravel()
    return float(flat @ flat)


def _ratio(num_sq: float, den_sq: float) -> float | None:
    """sqrt(num_sq / den_sq): a ratio of Frobenius norms from their squares; None for a zero denominator."""
    return math.sqrt(num_sq / den_sq) if den_sq > 0 else None


def whole_model_summary(base_sq: dict[str, float], delta_sq: dict[str, float], adapted: list[str],
                        embeddings: list[str]) -> dict[str, Any]:
    """The update of the whole backbone, every matrix together.

    Embedding matrices are included: full fine-tuning trains them like any other weight, so what
    it moved includes them. They also weigh a lot in ‖W₀‖ (a vocabulary's worth of rows, most of
    which a task never uses), which pulls the ratio down for every method, the more so the larger
    the vocabulary against the blocks; ``relative_update_without_embeddings`` is therefore kept
    beside it, and ``by_type`` shows each kind of matrix on its own. Biases and normalisation
    weights (1-D) are not matrices and are left out; so is the classification head (see
    :class:`BaseWeights`).

    Args:
        base_sq: ``{name: ‖W₀‖_F²}`` for every backbone matrix: the scope.
        delta_sq: ``{name: ‖ΔW‖_F²}`` of the matrices the run changed; a matrix of the scope not
            in it is unchanged (LoRA outside its adapted matrices).
        adapted: the run's like-for-like matrices (a LoRA run's own; for full fine-tuning, the
            primary comparison's).
        embeddings: the embedding matrices among ``base_sq``.

    Returns:
        ``{"matrices": N, "relative_update": sqrt(Σ‖ΔW‖_F²) / sqrt(Σ‖W₀‖_F²) over all N,
        "relative_update_without_embeddings": the same over the non-embedding matrices,
        "adapted_share": Σ‖ΔW‖_F² over ``adapted`` / Σ‖ΔW‖_F² over all N (1 for LoRA; None for no update),
        "by_type": {matrix type: {"matrices": count, "relative_update": mean of per-matrix ‖ΔW‖_F/‖W₀‖_F}}}``.
    """
    moved = {n: delta_sq.get(n, 0.0) for n in base_sq}
    outside = [n for n in base_sq if n not in set(embeddings)]
    total = sum(moved.values())
    by_type: dict[str, list[float]] = {}
    for n, sq0 in base_sq.items():
        if sq0 > 0:  # an all-zero pretrained matrix has no relative update
            by_type.setdefault(matrix_type(n), []).append(math.sqrt(moved[n] / sq0))
    return {
        "matrices": len(base_sq),
        "relative_update": _ratio(total, sum(base_sq.values())),
        "relative_update_without_embeddings": _ratio(sum(moved[n] for n in outside), sum(base_sq[n] for n in outside)),
        "adapted_share": sum(moved[n] for n in adapted if n in moved) / total if total > 0 else None,
        "by_type": {t: {"matrices": len(v), "relative_update": float(np.mean(v))} for t, v in by_type.items()},
    }


def _run_summary(per_matrix: dict[str, Any], cfg: WeightLensConfig) -> dict[str, Any]:
    """One run's like-for-like measures over the matrices of ``per_matrix``: means of the per-matrix
    relative update and ranks, intruder counts summed (plain, at the matched size, over the ε sweep)."""
    values = list(per_matrix.values())
    sims = [s for v in values for s in v["intruder_similarity"]]
    return {
        "matrices": len(values),
        "relative_update": float(np.mean([v["relative_update"] for v in values])),
        "stable_rank": float(np.mean([v["stable_rank"] for v in values])),
        "entropy_rank": float(np.mean([v["entropy_rank"] for v in values])),
        "intruders": int(sum(v["intruders"] for v in values)),
        "intruders_matched": int(sum(v["intruders_matched"] for v in values)),
        "intruders_by_epsilon": {f"{e:g}": count_intruders(np.asarray(sims), e) for e in cfg.epsilon_sweep},
    }


def matched_size(sizes: list[float]) -> float:
    """The common relative update at which intruders are recounted: the geometric mean of the
    compared runs' like-for-like relative updates (runs with no update left out; 0 if none moved).

    Between the methods' own sizes on a log scale, so neither method's update is stretched much
    further from what it was than the other's.
    """
    positive = [s for s in sizes if s > 0]
    return float(np.exp(np.mean(np.log(positive)))) if positive else 0.0


def run_weight_lens(cfg: WeightLensConfig, out: Path | str, *, overwrite: bool = False) -> WeightsRecord:
    """Measure every finished run under ``cfg.runs`` and write ``<out>/weights.json``.

    Returns:
        The record written (or found, when a folder with the same settings and runs exists): the
        like-for-like matrices (every variant's, and by variant), what each measure covers, the
        matched size of :func:`matched_size`, each run's measures (like for like, plus
        ``relative_update_whole`` and ``relative_update_whole_without_embeddings``; the whole-model
        update of :func:`whole_model_summary`; each matrix's; for full fine-tuning, its summary over
        each variant's matrices), and the comparison of ``MEASURES``.

    Raises:
        DataError: no finished runs, or no LoRA run to say which matrices were adapted.
    """
    unit = Commit(Path(out), cfg.model_dump(mode="json"), overwrite=overwrite, inputs=RunFolder.fingerprint_under(cfg.runs))
    if unit.done():  # a folder made with other settings is an error before any work
        return WeightsRecord.read(Path(out) / WeightsRecord.FILE)
    from lorascope.models.device import resolve_device

    resolve_device(cfg.device)  # an absent device fails before any run is read
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
    base = base_weights(cfg.base, label_sets.pop(), cfg.device)
    w0 = base.matrices
    lora_updates = {r.name: adapter_updates(r, w0) for r, m in records if m.method == "lora"}
    methods = {m.label: str(m.method) for _, m in records}
    # The matrices each LoRA variant adapted; full fine-tuning is measured on each variant's own set.
    names_of = {label: sorted(set().union(*(set(lora_updates[r.name]) for r, m in records if m.label == label)))
                for label, method in methods.items() if method == "lora"}
    names = sorted(set().union(*names_of.values()))
    unknown = [n for n in names if n not in w0]
    if unknown:
        raise DataError(f"base '{cfg.base}': has no matrix {unknown[0]} that the LoRA runs adapted; is it their base?")
    primary = cfg.pair[0] if cfg.pair and cfg.pair[0] in names_of else primary_label(methods) or next(iter(names_of))
    reference = cfg.pair[1] if cfg.pair else FULL
    base_sq = {n: _squared_norm(w0[n]) for n in base.backbone}

    # W₀'s left singular vectors, once per matrix for every run and both intruder counts (the same
    # numbers as computing them each time; two of the five SVDs a matrix and run otherwise takes).
    u0: dict[str, np.ndarray] = {}

    def u0_of(name: str) -> np.ndarray:
        if name not in u0:
            u0[name] = left_singular_vectors(w0[name])
        return u0[name]

    measured = []  # (run, record, its like-for-like matrices, per_matrix, summary_whole)
    for run, record in records:
        own = names_of.get(record.label, names_of[primary])
        if record.method == "lora":
            deltas = lora_updates[run.name]
            tuned = {n: w0[n] + d for n, d in deltas.items()}
            delta_sq = {n: _squared_norm(d) for n, d in deltas.items()}
        else:
            every = full_matrices(run, sorted(set(base.backbone) | set(names)))
            _check_shapes(run, every, w0)
            delta_sq = {n: _squared_norm(every[n], w0[n]) for n in base.backbone}
            tuned = {n: every[n] for n in names}
            del every  # the whole model is no longer needed, only the like-for-like matrices
        per_matrix = {n: asdict(matrix_update(w0[n], tuned[n], top_k=cfg.top_k, epsilon=cfg.epsilon, u0=u0_of(n)))
                      for n in names if n in tuned}
        for n, v in per_matrix.items():
            v["layer"] = layer_of(n)
        measured.append((run, record, own, per_matrix, whole_model_summary(base_sq, delta_sq, own, base.embeddings)))

    # Intruders at a matched size: one common relative update for every run, from the compared pair.
    compared = [float(np.mean([pm[n]["relative_update"] for n in own]))
                for _, record, own, pm, _ in measured if record.label in (primary, reference)]
    target = matched_size(compared)
    for run, record, _, per_matrix, _ in measured:
        if record.method == "lora":
            deltas = lora_updates[run.name]
        else:  # read again rather than held from above: all full runs' matrices at once may not fit in memory
            tuned = full_matrices(run, names)
            deltas = {n: np.subtract(tuned[n], w0[n], dtype=np.float64) for n in names}
        for n in per_matrix:
            per_matrix[n]["intruders_matched"] = matched_intruders(w0[n], deltas[n], target, top_k=cfg.top_k,
                                                                   epsilon=cfg.epsilon, u0=u0_of(n))

    runs: list[dict[str, Any]] = []
    for run, record, own, per_matrix, whole in measured:
        entry: dict[str, Any] = {"run": run.name, "method": record.label, "seed": record.seed,
                 "summary": _scoped_summary(per_matrix, own, whole, cfg), "summary_whole": whole,
                 "per_matrix": per_matrix}
        if record.method == "full":
            entry["summary_by_variant"] = {label: _scoped_summary(per_matrix, matrices, whole, cfg)
                                           for label, matrices in names_of.items()}
        runs.append(entry)
    runs_for = {label: [{**r, "summary": r["summary_by_variant"][label]} if "summary_by_variant" in r else r for r in runs]
                for label in names_of}
    result = WeightsRecord.create(
        config=cfg.model_dump(mode="json"), matrices=names, matrices_by_variant=names_of,
        scope=_scope(names_of, primary, base),
        matched_update={"relative_update": target, "labels": [primary, reference], "runs": len(compared)},
        runs=runs, comparison=compare_variants(runs, MEASURES, methods, runs_for, pair=cfg.pair))
    unit.write({result.FILE: result.model_dump()})
    return result


def _scoped_summary(per_matrix: dict[str, Any], matrices: list[str], whole: dict[str, Any],
                    cfg: WeightLensConfig) -> dict[str, Any]:
    """A run's summary over its like-for-like ``matrices``, with its whole-model relative updates beside
    (the same whichever matrices LoRA adapted), so that one comparison tests every scope."""
    return {**_run_summary({n: per_matrix[n] for n in matrices}, cfg), "relative_update_whole": whole["relative_update"],
            "relative_update_whole_without_embeddings": whole["relative_update_without_embeddings"]}


def _scope(names_of: dict[str, list[str]], primary: str, base: BaseWeights) -> dict[str, Any]:
    """Which matrices each measure covers, in words and counts (see :func:`run_weight_lens`)."""
    embeddings = (f"embeddings included: {', '.join(matrix_type(n) for n in base.embeddings)}" if base.embeddings
                  else "no embedding matrix")
    head = f"; the task's new head left out: {', '.join(matrix_type(n) for n in base.head)}" if base.head else ""
    return {
        "like_for_like": describe_matrices(names_of[primary]),
        "like_for_like_by_variant": {label: describe_matrices(own) for label, own in names_of.items()},
        "whole_model": f"every 2-D matrix of the backbone ({len(base.backbone)} matrices; {embeddings}{head})",
        "whole_model_matrices": len(base.backbone),
        "whole_model_embeddings": base.embeddings,
        "whole_model_without_embeddings": f"the same without the embeddings ({len(base.backbone) - len(base.embeddings)} "
                                          "matrices)",
        "whole_model_excluded": base.head,
        "measures": MEASURE_SCOPE,
    }


def _check_shapes(run: RunFolder, tuned: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> None:
    """A full run's matrices have the base's shapes (a resized vocabulary would not): else no update is defined."""
    for n, w in tuned.items():
        if w.shape != base[n].shape:
            raise DataError(f"{run.model_dir}: {n} has shape {tuple(w.shape)}, the base's has {tuple(base[n].shape)}; "
                            "is it the runs' base?")
