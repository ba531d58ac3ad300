"""The report's tables as CSV files (``report/tables/*.csv``), for a spreadsheet or a data frame.

Each file is built from the same collected records as the markdown table it stands for, not from
the formatted text: numbers keep their full precision (an interval is two columns, ``_low`` and
``_high``), one row per (task, method, seed, layer, …) as the table's records are shaped, and an
empty cell is a missing value. A task whose models did not learn it keeps its descriptive numbers
but not its tests (``task_learned`` false, p-values empty), as in the report.

| file | rows | report section |
|---|---|---|
| ``runs.csv`` | (task, method, seed) | Task performance |
| ``metric_differences.csv`` | task | LoRA − full fine-tuning on the dev metric |
| ``verdicts.csv`` | (task, verdict) | Verdicts |
| ``drift_by_method.csv`` | (task, method) | Representation drift |
| ``drift_comparison.csv`` | task | LoRA vs full fine-tuning |
| ``drift_by_run.csv`` | (task, method, seed) | Each run, with its interval over samples |
| ``drift_by_layer.csv`` | (task, method, seed, layer) | the drift-by-layer figure |
| ``drift_layer_tests.csv`` | (task, layer) | the per-layer tests |
| ``drift_controls.csv`` | (task, control) | Pipeline controls |
| ``drift_robustness.csv`` | (task, measure) | Does the answer depend on the measure? |
| ``frontier.csv`` | (task, sweep point) | Learning-rate sweep |
| ``lenses.csv`` | (lens, task, measure, method) | Weight lens, Forgetting, Probe retention: means |
| ``lens_tests.csv`` | (lens, task, measure) | the same: full − LoRA tests; Lenses side by side |
| ``lenses_by_run.csv`` | (lens, task, run, measure) | the runs behind them |
| ``serving.csv`` | (strategy, batch size) | Serving cost |
| ``serving_checks.csv`` | strategy check | Correctness |
| ``serving_resources.csv`` | strategy | Load time, memory and size on disk |
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lorascope.bench.record import BenchRecord
from lorascope.drift.record import LogRatioSummary, MeanInterval, ReductionInterval, StoredVerdict, Undefined
from lorascope.lenses.records import LensRun, WeightRun
from lorascope.records import StoredTest
from lorascope.report.collect import LENS_STAGES, StudyRecords
from lorascope.report.learning import main_metric, majority_of, not_learned
from lorascope.report.text import seed_sorted

Row = dict[str, Any]


def _value(x: object) -> object:
    """A CSV cell: numbers as Python writes them (shortest exact repr), booleans as true/false, missing as empty."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, bool):
        return "true" if x else "false"
    return x


def _bounds(prefix: str, pair: Sequence[float | None] | None) -> Row:
    """``{prefix_low, prefix_high}`` from a ``[low, high]`` pair (empty where missing)."""
    low, high = (pair if isinstance(pair, list | tuple) and len(pair) == 2 else (None, None))
    return {f"{prefix}_low": low, f"{prefix}_high": high}


def _p(test: StoredTest | Undefined | None) -> float | None:
    return test.p_value if isinstance(test, StoredTest) else None


def write_csv(path: Path, rows: list[Row]) -> Path | None:
    """Write ``rows`` with the union of their keys as columns (first-seen order); nothing when empty."""
    if not rows:
        return None
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: _value(r.get(k)) for k in columns} for r in rows)
    return path


def runs_rows(data: StudyRecords) -> list[Row]:
    """One row per run, sorted by task, method and seed: status, dev main metric, majority baseline, sizes, runtime."""
    rows = []
    for run in sorted(data.runs, key=lambda r: (str(r.record.task), r.label, r.record.seed or 0)):
        r, task = run.record, str(run.record.task)
        metric = r.main_metric or main_metric(data, task)
        rows.append({"task": task, "method": run.label, "seed": r.seed, "status": r.status,
                     "main_metric": metric, "dev_main_metric": (r.dev or {}).get(metric or ""),
                     "majority_baseline": majority_of(data, task, metric), "n_train": r.n_train, "n_eval": r.n_eval,
                     "runtime_s": r.runtime_s, "reason": r.reason})
    return rows


def metric_difference_rows(data: StudyRecords, untrained: set[str]) -> list[Row]:
    """One row per learned task: the LoRA − full difference on the dev metric, with intervals and p over seeds and over seeds and examples."""
    rows = []
    for task, d in data.drift.items():
        diff = d.comparison.metric_difference
        if not diff or task in untrained:
            continue
        seeds, both = diff.seeds_only, diff.seeds_and_examples
        rows.append({"task": task, "primary": d.primary, "main_metric": main_metric(data, task),
                     "estimate": diff.estimate, "n_seed_pairs": seeds.n,
                     "seeds_ci_low": seeds.low, "seeds_ci_high": seeds.high, "seeds_p": _p(seeds.test),
                     "seeds_and_examples_ci_low": both.low if both else None,
                     "seeds_and_examples_ci_high": both.high if both else None,
                     "seeds_and_examples_p": _p(both.test) if both else None,
                     "n_examples": both.n_examples if both else None})
    return rows


def verdict_rows(data: StudyRecords, untrained: set[str]) -> list[Row]:
    """One row per verdict; a task whose models did not learn it keeps its rows' names, not their numbers."""
    rows = []
    for task, d in data.drift.items():
        for key, v in d.comparison.verdicts.items():
            row: Row = {"task": task, "verdict": key, "hypothesis": v.hypothesis if isinstance(v, StoredVerdict) else key,
                        "primary_hypothesis": v.primary_hypothesis if isinstance(v, StoredVerdict) else True,
                        "task_learned": task not in untrained}
            if not isinstance(v, StoredVerdict):
                rows.append({**row, "status": "not computed", "error": v.error})
                continue
            if task in untrained:
                rows.append({**row, "status": "not reported (did not learn)"})
                continue
            second = v.secondary
            rows.append({**row, "status": v.status, "secondary_status": v.secondary_status,
                         "tests_agree": v.tests_agree, "robust_to_normality": v.robust_to_normality,
                         "estimate": v.estimate, "ci_low": v.ci_low, "ci_high": v.ci_high,
                         "confidence": v.confidence, "ci_method": v.ci_method, "uncertainty": v.uncertainty,
                         "test": v.test.test, "n": v.n, "p_raw": v.p_value, "p_adjusted": v.p_adjusted,
                         "reverse_p_raw": v.reverse_p_value, "reverse_p_adjusted": v.reverse_p_adjusted,
                         "secondary_test": second.test if second else None,
                         "secondary_p_raw": second.p_value if second else None,
                         "secondary_p_adjusted": v.secondary_p_adjusted,
                         "secondary_min_attainable_p": second.min_attainable_p if second else None,
                         "alpha": v.alpha, "correction": v.correction,
                         "family_size": v.family.size if v.family else v.n_comparisons,
                         "seeds_for_80pct_power": v.seeds_needed.t if v.seeds_needed else None})
    return rows


def drift_method_rows(data: StudyRecords) -> list[Row]:
    """One row per (task, method): mean and sd of drift, debiased drift, cosine and metric, intervals, noise floor, drift by thirds."""
    rows = []
    for task, d in data.drift.items():
        for method, s in d.methods.items():
            floor = d.noise_floor.get(method)
            row: Row = {"task": task, "method": method, "n_seeds": s.drift.n}
            for name, stat in (("drift", s.drift), ("drift_debiased", s.drift_debiased), ("cosine", s.cosine),
                               ("metric", s.metric)):
                row |= {f"{name}_mean": stat.mean, f"{name}_sd": stat.sd}
                if name.startswith("drift"):
                    row |= _bounds(f"{name}_ci_seeds", stat.ci_seeds) | _bounds(f"{name}_ci_seeds_samples", stat.ci_seeds_samples)
            row |= {"noise_floor_sd": floor.sd if floor else None, **_bounds("noise_floor_sd_ci", floor.sd_ci if floor else None)}
            row |= {f"drift_{k}": v for k, v in s.thirds.items()}
            rows.append(row)
    return rows


def drift_comparison_rows(data: StudyRecords, untrained: set[str]) -> list[Row]:
    """One row per task with a drift reduction: Δ%, the drift ratio and their intervals; tests only where the task was learned."""
    rows = []
    for task, d in data.drift.items():
        c = d.comparison
        if c.reduction_percent is None:
            continue
        tested = task not in untrained
        log_ratio = c.log_ratio if isinstance(c.log_ratio, LogRatioSummary) else None
        hier = c.reduction_ci_seeds_samples if isinstance(c.reduction_ci_seeds_samples, ReductionInterval) else None
        delta = c.mean_delta_ci_t if isinstance(c.mean_delta_ci_t, MeanInterval) and tested else None
        rows.append({"task": task, "primary": d.primary, "n_pairs": c.n_pairs, "task_learned": tested,
                     "reduction_percent": c.reduction_percent, "reduction_scale": c.reduction_scale,
                     "reduction_percent_of_means": c.reduction_percent_of_means,
                     "reduction_percent_debiased": c.reduction_percent_debiased,
                     "gm_ratio": log_ratio.gm_ratio if log_ratio else None,
                     **_bounds("gm_ratio_ci", log_ratio.gm_ratio_ci if log_ratio else None),
                     **_bounds("reduction_percent_ci_seeds", log_ratio.reduction_percent_ci if log_ratio else None),
                     "reduction_percent_ci_seeds_samples_low": hier.low if hier else None,
                     "reduction_percent_ci_seeds_samples_high": hier.high if hier else None,
                     "log_ratio_t_p": _p(log_ratio.t_test) if tested and log_ratio else None,
                     "log_ratio_sign_flip_p": _p(log_ratio.sign_flip) if tested and log_ratio else None,
                     "delta_paired_t_p": _p(c.paired_t) if tested else None,
                     "delta_sign_flip_p": _p(c.sign_flip) if tested else None,
                     "cohens_d": c.cohens_d if tested else None,
                     "mean_delta_ci_low": delta.low if delta else None,
                     "mean_delta_ci_high": delta.high if delta else None})
    return rows


def drift_run_rows(data: StudyRecords) -> list[Row]:
    """One row per (task, method, seed): dev metric, mean drift, debiased drift and cosine, with intervals over samples."""
    rows = []
    for task, d in data.drift.items():
        for r in seed_sorted(d.runs):
            rows.append({"task": task, "method": r.method, "seed": r.seed, "dev_main_metric": r.metric,
                         "mean_drift": r.mean_drift, **_bounds("mean_drift_ci", r.mean_drift_ci),
                         "mean_drift_debiased": r.mean_drift_debiased,
                         **_bounds("mean_drift_debiased_ci", r.mean_drift_debiased_ci),
                         "mean_cosine": r.mean_cosine, "n_samples": r.n_samples})
    return rows


def drift_layer_rows(data: StudyRecords) -> list[Row]:
    """One row per (task, method, seed, layer): every number each run's drift record holds for the layer."""
    rows = []
    for task, d in data.drift.items():
        for r in seed_sorted(d.runs):
            for layer in r.layers:
                values: Row = layer.model_dump(exclude_unset=True)
                first: Row = {k: values[k] for k in ("layer", "drift", "drift_debiased", "ci_low", "ci_high") if k in values}
                rows.append({"task": task, "method": r.method, "seed": r.seed, **first, **values})
    return rows


def layer_test_rows(data: StudyRecords, untrained: set[str]) -> list[Row]:
    """One row per (learned task, layer): the full − LoRA drift test of that layer and its Holm adjustment."""
    rows = []
    for task, d in data.drift.items():
        per_layer = d.comparison.per_layer
        if task in untrained or per_layer is None:
            continue
        for t in per_layer.layers:
            rows.append({"task": task, "layer": t.layer, "mean_delta_full_minus_lora": t.mean_delta,
                         "test": t.test, "n": t.n, "statistic": t.statistic, "p_value": t.p_value,
                         "p_holm": t.p_holm, "reject_holm": t.reject_holm, "alpha": per_layer.alpha})
    return rows


def control_rows(data: StudyRecords) -> list[Row]:
    """One row per (task, pipeline control): its expectation, drifts and whether it passed."""
    return [{"task": task, **c.model_dump()} for task, d in data.drift.items() for c in d.controls]


def robustness_rows(data: StudyRecords, untrained: set[str]) -> list[Row]:
    """One row per (learned task, robustness measure): LoRA and full means, their ratio with its interval, direction and tests."""
    rows = []
    for task, d in data.drift.items():
        if task in untrained or d.robustness is None:
            continue
        for r in d.robustness.rows:
            ratio = r.ratio
            rows.append({"task": task, "measure": r.description, "is_verdict_measure": r.is_verdict_measure,
                         "lora_mean": r.lora_mean, "full_mean": r.full_mean, "gm_ratio": ratio.gm_ratio if ratio else None,
                         **_bounds("gm_ratio_ci", ratio.gm_ratio_ci if ratio else None), "direction": r.direction,
                         "sign_flip_p": _p(ratio.sign_flip) if ratio else None,
                         "t_test_p": _p(ratio.t_test) if ratio else None, "note": r.note})
    return rows


def frontier_rows(data: StudyRecords) -> list[Row]:
    """One row per (task, frontier point): metric and drift with their intervals, and whether the selection rule chose it."""
    rows = []
    for task, d in data.drift.items():
        chosen = {c.label for c in (d.selection or {}).values()}
        for r in d.frontier.table if d.frontier else []:
            rows.append({"task": task, "point": r.label, "method": r.method, "setting": r.setting,
                         "selected": r.label in chosen, "n_seeds": r.n_seeds, "metric_mean": r.metric_mean,
                         **_bounds("metric_ci", r.metric_ci), "drift_gmean": r.drift_gmean, **_bounds("drift_ci", r.drift_ci)})
    return rows


def run_numbers(run: LensRun | WeightRun) -> dict[str, float]:
    """A lens run's summary numbers (nested records such as intruders by ε left out)."""
    summary: Mapping[str, object] = run.summary if isinstance(run.summary, dict) else run.summary.model_dump()
    return {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def lens_values(measures: Iterable[str], runs: Iterable[LensRun | WeightRun]) -> dict[tuple[str, str], list[float]]:
    """``(measure, method) -> the method's runs' values`` of each of ``measures`` (a lens comparison's), in
    the order of ``runs`` (every method, not only the compared pair)."""
    wanted = set(measures)
    by: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        for measure, value in run_numbers(run).items():
            if measure in wanted:
                by.setdefault((measure, run.method), []).append(float(value))
    return by


def lens_rows(data: StudyRecords) -> tuple[list[Row], list[Row], list[Row]]:
    """(per-method means, full − LoRA tests, per-run values) of every lens and task.

    Means are over each method's runs (every method, not only the compared pair) of the measures the
    lens's comparison holds; tests are the comparison's own.
    """
    untrained = set(not_learned(data))
    means, tests, runs = [], [], []
    for lens in LENS_STAGES:
        for task, result in data.lens(lens).items():
            comparison = result.comparison
            measures = list(comparison.measures)
            lens_runs: list[LensRun | WeightRun] = sorted(result.runs, key=lambda r: (r.method, r.seed))
            runs += [{"lens": lens, "task": task, "run": r.run, "method": r.method, "seed": r.seed, "measure": measure,
                      "value": value} for r in lens_runs for measure, value in run_numbers(r).items()]
            by = lens_values(measures, lens_runs)
            for (measure, method), values in sorted(by.items(), key=lambda kv: (measures.index(kv[0][0]), kv[0][1])):
                means.append({"lens": lens, "task": task, "measure": measure, "method": method, "n": len(values),
                              "mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None})
            for measure, entry in comparison.measures.items():
                learned = task not in untrained
                tests.append({"lens": lens, "task": task, "measure": measure, "primary": comparison.primary,
                              "reference": comparison.reference, "task_learned": learned, "n_pairs": len(comparison.seeds),
                              "primary_mean": entry.lora_mean, "primary_sd": entry.lora_sd,
                              "reference_mean": entry.full_mean, "reference_sd": entry.full_sd,
                              "paired_t_p": _p(entry.paired_t) if learned else None,
                              "sign_flip_p": _p(entry.sign_flip) if learned else None})
    return means, tests, runs


_SERVING = ("strategy", "batch_size", "n", "mean_ms", "ci_low_ms", "ci_high_ms", "std_ms", "p50_ms", "p95_ms", "p99_ms",
            "throughput_rps", "ratio_to_merged", "ratio_ci_low", "ratio_ci_high", "p50_ratio_to_merged", "h2",
            "mean_seq_len", "device", "dtype", "threads")


def serving_rows(bench: BenchRecord | None) -> tuple[list[Row], list[Row], list[Row]]:
    """(latency per strategy and batch size, correctness checks, resources per strategy) of bench.json."""
    if bench is None:
        return [], [], []
    latency = [{k: getattr(r, k) for k in _SERVING} for r in bench.results]
    checks = [c.model_dump(exclude_unset=True) for c in bench.checks]
    resources = [{"strategy": name, "adapters": len(s.adapters), "load_s": s.load_s,
                  "model_tensor_bytes": s.memory.model_tensor_bytes, "cuda_resident_bytes": s.memory.cuda_resident_bytes,
                  "rss_load_delta_bytes": s.memory.rss_load_delta_bytes, "artifact_bytes": s.artifact_bytes,
                  "artifact_estimated": s.artifact_estimated} for name, s in bench.strategies.items()]
    return latency, checks, resources


def all_tables(data: StudyRecords) -> dict[str, list[Row]]:
    """File stem -> rows of every table of the module docstring (empty where the study has none)."""
    untrained = set(not_learned(data))
    means, tests, lens_runs = lens_rows(data)
    latency, checks, resources = serving_rows(data.bench)
    return {
        "runs": runs_rows(data),
        "metric_differences": metric_difference_rows(data, untrained),
        "verdicts": verdict_rows(data, untrained),
        "drift_by_method": drift_method_rows(data),
        "drift_comparison": drift_comparison_rows(data, untrained),
        "drift_by_run": drift_run_rows(data),
        "drift_by_layer": drift_layer_rows(data),
        "drift_layer_tests": layer_test_rows(data, untrained),
        "drift_controls": control_rows(data),
        "drift_robustness": robustness_rows(data, untrained),
        "frontier": frontier_rows(data),
        "lenses": means,
        "lens_tests": tests,
        "lenses_by_run": lens_runs,
        "serving": latency,
        "serving_checks": checks,
        "serving_resources": resources,
    }


def write_tables(data: StudyRecords, folder: Path) -> dict[str, Path]:
    """Write every non-empty table as ``<folder>/<name>.csv`` (the folder replaced whole, so a table the
    study no longer has does not linger); returns name -> path."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    written = {name: write_csv(folder / f"{name}.csv", rows) for name, rows in all_tables(data).items()}
    return {name: path for name, path in written.items() if path is not None}

