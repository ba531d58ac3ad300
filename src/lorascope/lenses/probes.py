"""``run_probe_retention``: how much of other tasks' information fine-tuning on one task left usable.

A linear probe — scikit-learn's logistic regression on standardised features, with a fixed L2
regularisation ``c`` (never tuned, so every model gets the same probe) — is fitted on a model's
mean-pooled last-layer states of a probe task's training examples and scored on its dev examples.
Retention = the run's probe accuracy − the base's, in points: 0 means fine-tuning left that task's
information as usable as it was in the base. A probe that cannot beat the majority label on the
base is flagged: its retention says nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from lorascope.artifacts import Commit
from lorascope.errors import DataError
from lorascope.lenses.compare import compare_variants
from lorascope.lenses.config import ProbeConfig
from lorascope.lenses.records import ProbesRecord
from lorascope.run_folder import RunFolder

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from lorascope.models.load import LoadedModel

# Training examples are drawn with this seed, so every model is probed on the same rows.
PROBE_DATA_SEED = 0
# float32 features of the same weights on the same inputs: anything above rounding is a real difference.
CONTROL_TOLERANCE = 1e-6


def probe_split(task: str, cfg: ProbeConfig) -> dict[str, Any]:
    """A probe task's texts and labels: ``n_train`` seeded training rows, the first ``n_dev`` dev rows."""
    from lorascope.data.load import load_split
    from lorascope.data.tasks import get_task

    spec = get_task(task)
    train, dev = load_split(spec, "train", cfg.data_dir), load_split(spec, "validation", cfg.data_dir)
    rows = np.random.default_rng(PROBE_DATA_SEED).permutation(len(train))[: cfg.n_train]
    train = train.select(sorted(rows.tolist()))
    dev = dev.select(range(min(cfg.n_dev, len(dev))))

    def texts(ds: Any) -> list[Any]:
        return [[a, b] for a, b in zip(ds["text_a"], ds["text_b"])] if spec.is_pair else list(ds["text_a"])

    return {"train_texts": texts(train), "train_labels": np.asarray(train["label"]),
            "dev_texts": texts(dev), "dev_labels": np.asarray(dev["label"])}


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray, c: float) -> float:
    """Dev accuracy of a logistic-regression probe fitted on ``x_train [n, d]`` (deterministic: lbfgs, no sampling)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    probe.fit(x_train, y_train)
    return float(probe.score(x_dev, y_dev))


def _features(loaded: LoadedModel, data: dict[str, dict[str, Any]], cfg: ProbeConfig) -> dict[str, np.ndarray]:
    """Mean-pooled last-layer states ``[n_train + n_dev, d]`` of every probe task for one loaded model,
    on ``cfg.device``; the model is let go afterwards, so that the next one finds the device's memory free."""
    from lorascope.models.load import as_device
    from lorascope.represent.encode import Encoder

    # A model built elsewhere (the LoRA-at-init control) moves here. (PreTrainedModel.to is wrapped with
    # functools.wraps, which type checkers do not bind to the instance.)
    loaded.model.to(as_device(cfg.device))  # type: ignore[arg-type]
    with Encoder(loaded, precision=cfg.precision) as enc:
        return {task: enc.encode(d["train_texts"] + d["dev_texts"], max_length=cfg.max_length,
                                 batch_size=cfg.batch_size)[-1] for task, d in data.items()}


def _accuracies(states: dict[str, np.ndarray], data: dict[str, dict[str, Any]], cfg: ProbeConfig) -> dict[str, float]:
    """Probe accuracy on every probe task, from a model's features."""
    out = {}
    for task, d in data.items():
        n = len(d["train_texts"])
        out[task] = probe_accuracy(states[task][:n], d["train_labels"], states[task][n:], d["dev_labels"], cfg.c)
    return out


def _lora_at_init(source: str, label_names: tuple[str, ...]) -> LoadedModel:
    """The base wrapped in a fresh LoRA adapter (B = 0): its probe must score exactly as the base's.

    Built on the CPU; :func:`_features` moves it to the lens's device.
    """
    import torch

    from lorascope.models.adapt import prepare_for_method
    from lorascope.models.load import load_classifier

    loaded = load_classifier(source, label_names, seed=0, device=torch.device("cpu"))
    loaded.model, _ = prepare_for_method(cast("PreTrainedModel", loaded.model), "lora", dropout=0.0)  # not wrapped yet
    loaded.model.eval()
    return loaded


def run_probe_retention(cfg: ProbeConfig, out: Path | str, *, overwrite: bool = False) -> ProbesRecord:
    """Probe the base and every finished run under ``cfg.runs`` on each probe task; write ``<out>/probes.json``.

    Returns:
        The record written (or found, when a folder with the same settings and runs exists).

    Raises:
        DataError: no probe tasks, a probe task that is the runs' own, no finished runs, or a failed control.
    """
    unit = Commit(Path(out), cfg.model_dump(mode="json"), overwrite=overwrite, inputs=RunFolder.fingerprint_under(cfg.runs))
    if unit.done():  # a folder made with other settings is an error before any work
        return ProbesRecord.read(Path(out) / ProbesRecord.FILE)
    from lorascope.data.tasks import get_task
    from lorascope.models.device import resolve_device
    from lorascope.models.load import load_classifier, load_run
    from lorascope.models.registry import resolve_model

    resolve_device(cfg.device)  # an absent device fails before any data or model is read
    if not cfg.probe_tasks:
        raise DataError("probe_tasks: empty; name the tasks to probe (e.g. probe_tasks=[mrpc,rte])")
    records = [(r, r.record()) for r in RunFolder.finished_under(cfg.runs)]
    records = [(r, m) for r, m in records if m.ok and cfg.task in (None, m.task)]
    if not records:
        raise DataError(f"{cfg.runs}: no finished training runs (expected */metrics.json with status ok)")
    names = {get_task(t).name: t for t in cfg.probe_tasks}  # a task is known by its name, read from its file
    own = sorted(set(names) & {m.task for _, m in records})
    if own:
        raise DataError(f"probe_tasks: '{own[0]}' is the runs' own task; probe retention measures other tasks")
    source = resolve_model(cfg.base)
    foreign = sorted({m.base_model_source for _, m in records} - {source}, key=str)
    if foreign:
        raise DataError(f"{cfg.runs}: runs trained from '{foreign[0]}', not from base '{cfg.base}'")
    data = {name: probe_split(ref, cfg) for name, ref in names.items()}
    labels = tuple(records[0][1].label_names or ("LABEL_0", "LABEL_1"))
    base_states = _features(load_classifier(source, labels, seed=0, device=cfg.device), data, cfg)
    base = _accuracies(base_states, data, cfg)
    majority = {t: float(np.bincount(d["dev_labels"]).max() / len(d["dev_labels"])) for t, d in data.items()}
    # Control: a fresh LoRA adapter (B = 0) must leave every feature, hence every probe, as the base's.
    init_states = _features(_lora_at_init(source, labels), data, cfg)
    gap = max(float(np.abs(init_states[t] - base_states[t]).max()) for t in data)
    controls = [{"name": "lora_at_init", "max_feature_difference": gap, "passed": gap < CONTROL_TOLERANCE}]
    if not controls[0]["passed"]:
        raise DataError(f"probe control 'lora_at_init' failed: its features differ from the base's by up to {gap:.3g} "
                        f"(must be < {CONTROL_TOLERANCE:g}); the lens is broken")
    runs = []
    methods = {record.label: str(record.method) for _, record in records}
    for run, record in records:
        acc = _accuracies(_features(load_run(run.path, device=cfg.device), data, cfg), data, cfg)
        summary = {f"accuracy_{t}": acc[t] for t in data} | {f"retention_{t}": acc[t] - base[t] for t in data}
        summary["retention"] = float(np.mean([acc[t] - base[t] for t in data]))
        runs.append({"run": run.name, "method": record.label, "seed": record.seed, "summary": summary})
    measures = ("retention", *(f"retention_{t}" for t in data))
    result = ProbesRecord.create(
        config=cfg.model_dump(mode="json"), probe_tasks=list(data), base=base, majority=majority,
        uninformative=[t for t in data if base[t] <= majority[t]], controls=controls, runs=runs,
        comparison=compare_variants(runs, measures, methods, pair=cfg.pair))
    unit.write({result.FILE: result.model_dump()})
    return result
