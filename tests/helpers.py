"""Small utilities shared by tests: logits of a model on a tokenised dataset, a folder of tiny trained runs, a
server on a free port, and the typed records a report reads, built from what a test writes by hand."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from lorascope.bench.record import BenchRecord
from lorascope.data.tokenize import CountingCollator
from lorascope.drift.analysis import RunDrift, seed_noise_floor, summarise_method
from lorascope.drift.record import DriftRecord
from lorascope.lenses.records import ForgettingRecord, ProbesRecord, WeightsRecord
from lorascope.records import BaselinesRecord, SanityRecord
from lorascope.report.collect import StudyRecords, StudyRun, StudyTimings
from lorascope.run_folder import RunRecord
from lorascope.weight_update.scope import short_types


@torch.no_grad()
def logits_of(model, tokenizer, ds, batch_size: int = 8, pad_to_max_length: bool = False, max_length: int = 64) -> torch.Tensor:
    """Logits ``[n, n_labels]`` of ``model`` on tokenised ``ds`` (float64 for comparisons)."""
    model.eval()
    collate = CountingCollator(tokenizer, pad_to_max_length, max_length)
    rows = [ds[i] for i in range(len(ds))]
    out = []
    for start in range(0, len(rows), batch_size):
        batch = collate(rows[start : start + batch_size])
        batch.pop("labels", None)
        out.append(model(**batch).logits.double())
    return torch.cat(out)


def train_tiny_runs(root: Path, task: str, max_length: int) -> Path:
    """LoRA and full fine-tuning of ``tiny-llama`` on ``task``, seeds 1 and 2, into ``root/<task>-<method>-s<seed>``."""
    import os

    from lorascope.train import TrainConfig, run_train
    from tests.conftest import GLUE_DIR

    os.environ["GLUE_DIR"] = str(GLUE_DIR)
    for method in ("lora", "full"):
        for seed in (1, 2):
            cfg = TrainConfig(task=task, method=method, model="tiny-llama", seed=seed, train_limit=24, eval_limit=16,
                              epochs=1, batch_size=8, max_length=max_length, lr=5e-3 if method == "lora" else 1e-3)
            assert run_train(cfg, root / f"{task}-{method}-s{seed}", progress=False).ok
    return root


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app, timeout_s: float = 30.0):
    """``app`` served by uvicorn (``make_server``) on a free loopback port in a thread; yields its URL
    once the server has started, and stops it on exit."""
    import threading
    import time

    from lorascope.serve.http import make_server

    port = free_port()
    server = make_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + timeout_s
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started, "the server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- Typed records for the report's tests ---------------------------------------------------------
# The report is handed a study as its typed records (StudyRecords), as ``collect`` reads them from the
# study folder: these build them from the plain dicts a test writes, and make small complete records
# where a test cares about only a few of their numbers.

_LENSES = ("weights", "forgetting", "probes")
_BASES = ("lora", "full")


def _record(cls: type, value):
    """``value`` as a ``cls`` record: kept when it is one, read back when it is a dumped one (it has
    ``kind``), else made at the current schema version."""
    if isinstance(value, cls):
        return value
    return cls.model_validate(value) if "kind" in value else cls.create(**value)


def _study_run(run: dict | StudyRun, drift: dict[str, DriftRecord]) -> StudyRun:
    """A run as ``collect`` gives it, from a test's run dict whose ``method`` is the label the study groups
    by: a variant label (``lora_r64``, ``full_lr2em05``) becomes ``variant``, and ``method`` its base method,
    read from the task's drift record where it records the variant's settings, else from the label."""
    if isinstance(run, StudyRun):
        return run
    fields = dict(run)
    folder = fields.pop("folder", None)
    label = fields.get("method")
    if label is not None and label not in _BASES:
        record = drift.get(fields.get("task"))
        settings = (record.variants.get(label) if record is not None else None) or {}
        fields["variant"] = label
        fields["method"] = settings.get("method") or ("full" if str(label).startswith("full") else "lora")
    folder = folder or f"{fields.get('task')}-{label}-s{fields.get('seed')}"
    return StudyRun(RunRecord.model_validate(fields), folder)


def _timings(value: dict | StudyTimings | None) -> StudyTimings:
    """The study's journal: ``{"total_s": ..., "invocations": [...]}``, or an older ``{stage: seconds}``."""
    if isinstance(value, StudyTimings):
        return value
    value = value or {}
    if "total_s" in value:
        return StudyTimings(dict(value["total_s"]), list(value.get("invocations") or []))
    return StudyTimings(dict(value), [])


def study_records(data: dict) -> StudyRecords:
    """The :class:`~lorascope.report.collect.StudyRecords` of a study written as plain dicts under
    ``collect``'s keys (``drift``, ``runs``, ``baselines``, ``config``, ``bench``, ``weights``,
    ``forgetting``, ``probes``, ``sanity``, ``provenance``, ``timings``, ``study``, ``drift_skipped``,
    ``lens_skipped``); a key left out takes the dataclass's default (none, or empty).

    Each record is checked by its type, as ``collect`` checks the files: a dict that is not a valid
    record fails here. Values that are records already are kept. The records are frozen, so a test
    that changes its study changes the dicts first and then calls this.
    """
    drift = {task: _record(DriftRecord, d) for task, d in (data.get("drift") or {}).items()}
    baselines = data.get("baselines")
    optional = {key: data[key] for key in ("drift_skipped", "lens_skipped", "provenance") if key in data}
    if "timings" in data:
        optional["timings"] = _timings(data["timings"])
    if data.get("bench") is not None:
        optional["bench"] = _record(BenchRecord, data["bench"])
    for lens, cls in zip(_LENSES, (WeightsRecord, ForgettingRecord, ProbesRecord), strict=True):
        if lens in data:
            optional[lens] = {task: _record(cls, r) for task, r in (data[lens] or {}).items()}
    return StudyRecords(
        study=Path(data.get("study") or "study"),
        config=data.get("config") or {},
        baselines=BaselinesRecord.create(baselines=[]) if baselines is None else _record(BaselinesRecord, baselines),
        sanity=None if data.get("sanity") is None else _record(SanityRecord, data["sanity"]),
        runs=[_study_run(r, drift) for r in data.get("runs") or []],
        drift=drift,
        **optional,
    )


def _spread(mean: float, n: int) -> list[float]:
    """``n`` per-seed values whose mean is ``mean``, spread evenly over ±10% of it."""
    if n == 1:
        return [mean]
    return [mean * (1 + 0.2 * (i / (n - 1) - 0.5)) for i in range(n)]


def _sd(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _paired_t(p_value: float | None, n: int, alternative: str = "two-sided") -> dict:
    """A paired t-test over ``n`` seed pairs with p ``p_value`` (its statistic the one that p belongs to)."""
    statistic = None if p_value is None else float(stats.t.isf(p_value / 2, n - 1))
    return {"test": f"paired t-test (df={n - 1})", "n": n, "statistic": statistic, "p_value": p_value,
            "alternative": alternative}


def _sign_flip(n: int) -> dict:
    """The exact sign-flip test over ``n`` seed pairs at its smallest attainable two-sided p (every sign alike)."""
    p = 2 / 2**n
    return {"test": "sign-flip permutation (exact)", "n": n, "statistic": 0.01, "p_value": p,
            "alternative": "two-sided", "min_attainable_p": p, "note": f"enumerated all 2^{n} sign patterns"}


def lens_comparison(measures: dict[str, tuple[float, float, float | None]], seeds=(1, 2, 3), primary: str = "lora",
                    reference: str = "full") -> dict:
    """A lens's ``comparison``: per measure (LoRA mean, full FT mean, paired t p), each mean over ``seeds``
    with its runs spread over ±10%, the paired t-test at that p and the exact sign-flip test."""
    n = len(seeds)
    compared = {key: {"lora_n": n, "lora_mean": lora, "lora_sd": _sd(_spread(lora, n)), "full_n": n, "full_mean": full,
                      "full_sd": _sd(_spread(full, n)), "paired_t": _paired_t(p, n), "sign_flip": _sign_flip(n)}
                for key, (lora, full, p) in measures.items()}
    return {"seeds": list(seeds), "measures": compared, "primary": primary, "reference": reference,
            "variants": {primary: {"seeds": list(seeds), "measures": compared}}}


def _lens_runs(task: str, measures: dict[str, tuple[float, float, float | None]], seeds, labels=_BASES) -> list[dict]:
    """Each run's summary, per measure the value ``lens_comparison`` averages for its method and seed."""
    spread = {key: (_spread(lora, len(seeds)), _spread(full, len(seeds))) for key, (lora, full, _) in measures.items()}
    return [{"run": f"{task}-{label}-s{seed}", "method": label, "seed": seed,
             "summary": {key: values[which][i] for key, values in spread.items()}}
            for which, label in enumerate(labels) for i, seed in enumerate(seeds)]


def small_drift_record(task: str = "sst2", means: dict[str, float] | None = None, p_value: float | None = 0.001,
                       seeds=(1, 2, 3), pair: tuple[str, str] | None = None, **fields) -> DriftRecord:
    """A drift.json of a small study: every label's runs (``means``: label -> mean drift over seeds, each
    run's drift flat over the layers, the seeds spread over ±10%), their summaries over seeds and the
    comparison of ``pair`` (LoRA label, full label; default: the first of each) with its paired t-test
    at ``p_value``. ``fields`` set or replace any other field (``layers``, ``robustness``, ``frontier``,
    ``selection``...)."""
    means = means or {"lora": 0.01, "full": 0.05}
    layers = (fields.get("layers") or {}).get("averaged") or [0]
    n_samples = 40
    runs = {}
    for label, mean in means.items():
        runs[label] = []
        for i, (seed, drift) in enumerate(zip(seeds, _spread(mean, len(seeds)), strict=True)):
            rows = [{"layer": layer, "cka": 1 - drift, "cka_debiased": 1 - drift, "cosine": 0.9, "drift": drift,
                     "drift_debiased": drift, "ci_low": 0.9 * drift, "ci_high": 1.1 * drift} for layer in layers]
            runs[label].append(RunDrift(method=label, seed=seed, metric=0.85 + 0.005 * i, layers=rows, mean_drift=drift,
                                        mean_drift_ci=(0.9 * drift, 1.1 * drift), mean_drift_debiased=drift,
                                        mean_drift_debiased_ci=(0.9 * drift, 1.1 * drift), mean_cosine=0.9,
                                        n_samples=n_samples, thirds={"early": drift, "middle": drift, "late": drift}))
    kinds = {label: "full" if label.startswith("full") else "lora" for label in means}
    lora, full = pair or (next(label for label, kind in kinds.items() if kind == kind_of)
                          for kind_of in ("lora", "full"))
    drift_lora, drift_full = ([r.mean_drift for r in runs[label]] for label in (lora, full))
    ratio = float(np.exp(np.mean(np.log(np.array(drift_lora) / np.array(drift_full)))))
    comparison = {"paired_seeds": list(seeds), "n_pairs": len(seeds), "drift_lora": drift_lora,
                  "drift_full": drift_full,
                  "reduction_percent": 100 * (1 - ratio), "reduction_scale": "geometric mean of the per-seed ratios",
                  "reduction_percent_of_means": 100 * (1 - np.mean(drift_lora) / np.mean(drift_full)),
                  "paired_t": _paired_t(p_value, len(seeds)) if len(seeds) > 1 else
                  {"error": "one seed pair allows no test across seeds"}}
    record = {
        "task": task, "base": "tiny-llama", "pooling": "mean", "n_samples": n_samples, "n_layers": max(layers) + 1,
        "controls": [{"name": "base_vs_base", "expectation": "drift = 0 (|drift| < 1e-06) for an independent second "
                      "extraction", "max_drift": 2.8e-13, "mean_drift": 1.1e-14, "mean_drift_debiased": 1.2e-14,
                      "passed": True}],
        "runs": [r.to_dict() for rs in runs.values() for r in rs],
        "methods": {label: summarise_method(rs) for label, rs in runs.items()},
        "noise_floor": {label: seed_noise_floor(rs) for label, rs in runs.items()},
        "variants": {label: {"method": kind, "variant": None if label == kind else label}
                     for label, kind in kinds.items()},
        "primary": lora, "comparison": comparison, "comparisons": {lora: comparison},
        "config": {"n_samples": n_samples, "pooling": "mean", "pair": [lora, full]},
    }
    return DriftRecord.create(**{**record, **fields})


def weight_scope(matrices: list[str], whole: int, embeddings: list[str]) -> dict:
    """The weight lens's ``scope`` for ``matrices`` (``model.layers.<i>...`` names) adapted in a backbone
    of ``whole`` matrices, ``embeddings`` among them."""
    layers = len({name.split(".")[2] for name in matrices})
    like = (f"{', '.join(short_types(matrices))} of {layers} layer{'s' if layers != 1 else ''} "
            f"({len(matrices)} matrices)")
    return {"like_for_like": like, "like_for_like_by_variant": {"lora": like},
            "whole_model": f"every 2-D matrix of the backbone ({whole} matrices)", "whole_model_matrices": whole,
            "whole_model_embeddings": embeddings,
            "whole_model_without_embeddings": f"the same without the embeddings ({whole - len(embeddings)} matrices)",
            "whole_model_excluded": ["score.weight"],
            "measures": {"relative_update": "like_for_like", "stable_rank": "like_for_like",
                         "entropy_rank": "like_for_like", "intruders": "like_for_like",
                         "intruders_matched": "like_for_like",
                         "relative_update_whole": "whole_model",
                         "relative_update_whole_without_embeddings": "whole_model_without_embeddings"}}


def weight_run(task: str, method: str, seed: int, matrices: list[str], whole: int, **summary) -> dict:
    """One run of the weight lens over ``matrices`` (of a backbone of ``whole``), its summary's measures
    given where a test sets them and typical of a small update elsewhere; every matrix alike."""
    values = {"relative_update": 0.01, "stable_rank": 2.0, "entropy_rank": 4.0, "intruders": 0, "intruders_matched": 0,
              "relative_update_whole": 0.005, "relative_update_whole_without_embeddings": 0.006, **summary}
    intruders = int(round(values["intruders"]))
    values.update(intruders=intruders, intruders_matched=int(round(values["intruders_matched"])))
    values.setdefault("intruders_by_epsilon", {"0.5": intruders})
    per_matrix = {name: {"relative_update": values["relative_update"], "stable_rank": values["stable_rank"],
                         "entropy_rank": values["entropy_rank"], "top_singular_values": [0.1] * 10,
                         "intruder_similarity": [0.95] * 10, "intruders": 0, "epsilon": 0.5, "layer": i // 2,
                         "intruders_matched": 0} for i, name in enumerate(matrices)}
    whole_update = {"matrices": whole, "relative_update": values["relative_update_whole"],
                    "relative_update_without_embeddings": values["relative_update_whole_without_embeddings"],
                    "adapted_share": 1.0 if method == "lora" else 0.3, "by_type": {}}
    return {"run": f"{task}-{method}-s{seed}", "method": method, "seed": seed,
            "summary": {"matrices": len(matrices), **values}, "summary_whole": whole_update, "per_matrix": per_matrix}


def small_weights_record(measures: dict[str, tuple[float, float, float | None]], task: str = "sst2", seeds=(1, 2, 3),
                         layers: int = 6, **fields) -> WeightsRecord:
    """A weights.json of LoRA on q_proj and v_proj of ``layers`` layers against full fine-tuning, whose
    comparison has ``measures`` (see :func:`lens_comparison`) and its runs those means."""
    matrices = [f"model.layers.{i}.self_attn.{p}_proj.weight" for i in range(layers) for p in ("q", "v")]
    whole = 7 * layers + 1
    runs = [weight_run(task, r["method"], r["seed"], matrices, whole, **r["summary"])
            for r in _lens_runs(task, measures, seeds)]
    record = {"config": {"top_k": 10, "epsilon": 0.5}, "matrices": matrices, "matrices_by_variant": {"lora": matrices},
              "scope": weight_scope(matrices, whole, ["model.embed_tokens.weight"]),
              "matched_update": {"relative_update": 0.005, "labels": ["lora", "full"], "runs": 2 * len(seeds)},
              "runs": runs, "comparison": lens_comparison(measures, seeds)}
    return WeightsRecord.create(**{**record, **fields})


def small_forgetting_record(task: str = "sst2", text_source: str = "RTE dev premises (first 24; news and Wikipedia)",
                            seeds=(1, 2, 3), **fields) -> ForgettingRecord:
    """A forgetting.json: LoRA forgets less than full fine-tuning (loss in nats per token over the base's)."""
    base_loss = 3.71
    measures = {"forgetting": (0.02, 0.15, 0.004), "loss": (base_loss + 0.02, base_loss + 0.15, 0.004)}
    controls = [{"name": name, "forgetting": 0.0, "expected": 0.0, "passed": True}
                for name in ("base_backbone_reinserted", "lora_at_init", "chunked_loss_is_full_logits_loss")]
    runs = _lens_runs(task, measures, seeds)
    for r in runs:
        r["summary"]["perplexity"] = 2.718281828459045 ** r["summary"]["loss"]
    record = {"config": {"n_texts": 24, "max_length": 32}, "text_source": text_source, "n_texts": 24,
              "base_loss": base_loss, "base_perplexity": 2.718281828459045 ** base_loss, "controls": controls,
              "runs": runs, "comparison": lens_comparison(measures, seeds)}
    return ForgettingRecord.create(**{**record, **fields})


def small_probes_record(task: str = "sst2", probe_tasks=("rte",), seeds=(1, 2, 3), **fields) -> ProbesRecord:
    """A probes.json: each probe task's retention (accuracy − the base's), LoRA keeping more than full fine-tuning."""
    measures = {"retention": (-0.01, -0.06, 0.01)}
    measures |= {f"retention_{t}": (-0.01, -0.06, 0.01) for t in probe_tasks}
    runs = _lens_runs(task, measures, seeds)
    for r in runs:
        r["summary"] |= {f"accuracy_{t}": 0.7 + r["summary"][f"retention_{t}"] for t in probe_tasks}
    record = {"config": {"probe_tasks": list(probe_tasks), "n_train": 40, "n_dev": 24, "c": 1.0},
              "probe_tasks": list(probe_tasks), "base": dict.fromkeys(probe_tasks, 0.7),
              "majority": dict.fromkeys(probe_tasks, 0.53), "uninformative": [],
              "controls": [{"name": "lora_at_init", "max_feature_difference": 0.0, "passed": True}],
              "runs": runs, "comparison": lens_comparison(measures, seeds)}
    return ProbesRecord.create(**{**record, **fields})


def prose_faults(md: str) -> list[str]:
    """Each slip in ``md`` (the provenance's YAML block left out), as ``line number: what: the line``."""
    body = md.split("```yaml", 1)[0]
    faults = [f"{body[:body.index(chr(10) * 3)].count(chr(10)) + 1}: two blank lines in a row"] if "\n\n\n" in body else []
    # "loss became nan" is a failed run's recorded reason, the run's own words, not a missing value printed.
    slips = {"empty brackets": r"\(\s*\)|\[\s*\]", "a sentence with nothing in it": r":\s*[.;]",
             "a missing value printed": r"(?<!became )\b(None|nan|NaN)\b", "a doubled stop": r"(?<![.\d])\.\.(?![.\d])",
             "a space before a stop or comma": r"\w \.(\s|$)| ,"}
    for n, line in enumerate(body.splitlines(), 1):
        faults += [f"{n}: {what}: {line}" for what, pattern in slips.items() if re.search(pattern, line)]
        if line.count("(") != line.count(")") or line.count("[") != line.count("]"):
            faults.append(f"{n}: unbalanced brackets: {line}")
    return faults
