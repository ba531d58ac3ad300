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
from pathlib import Path
from typing import Any

import numpy as np

from lorascope.report.collect import StudyRecords
from lorascope.report.learning import main_metric, majority_of, not_learned

Row = dict[str, Any]
LENSES = ("weights", "forgetting", "probes")


def _value(x: Any) -> Any:
    """A CSV cell: numbers as Python writes them (shortest exact repr), booleans as true/false, missing as empty."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, bool):
        return "true" if x else "false"
    return x


def _bounds(prefix: str, pair: Any) -> Row:
    """``{prefix_low, prefix_high}`` from a ``[low, high]`` pair (empty where missing)."""
    low, high = (pair if isinstance(pair, list | tuple) and len(pair) == 2 else (None, None))
    return {f"{prefix}_low": low, f"{prefix}_high": high}


def _p(test: dict[str, Any] | None) -> Any:
    return (test or {}).get("p_value")


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
    for r in sorted(data["runs"], key=lambda r: (r["task"], r["method"], int(r["seed"]))):
        metric = r.get("main_metric") or main_metric(data, r["task"])
        majority = majority_of(data, r["task"], metric)
        rows.append({"task": r["task"], "method": r["method"], "seed": r["seed"], "status": r.get("status"),
                     "main_metric": metric, "dev_main_metric": (r.get("dev") or {}).get(metric),
                     "majority_baseline": majority, "n_train": r.get("n_train"), "n_eval": r.get("n_eval"),
                     "runtime_s": r.get("runtime_s"), "reason": r.get("reason")})
    return rows


def metric_difference_rows(data: StudyRecords, untrained: set[str]) -> list[Row]:
    """One row per learned task: the LoRA − full difference on the dev metric, with intervals and p over seeds and over seeds and examples."""
    rows = []
    for task, d in data["drift"].items():
        diff = d["comparison"].get("metric_difference")
        if not diff or task in untrained:
            continue
        seeds, both = diff.get("seeds_only") or {}, diff.get("seeds_and_examples") or {}
        rows.append({"task": task, "primary": d.get("primary"), "main_metric": main_metric(data, task),
                     "estimate": diff.get("estimate"), "n_seed_pairs": seeds.get("n"),
                     "seeds_ci_low": seeds.get("low"), "seeds_ci_high": seeds.get("high"), "seeds_p": _p(seeds.get("test")),
                     "seeds_and_examples_ci_low": both.get("low"), "seeds_and_examples_ci_high": both.get("high"),
                     "seeds_and_examples_p": _p(both.get("test")), "n_examples": both.get("n_examples")})
    return rows


def verdict_rows(data: StudyRecords, untrained: set[str]) -> list[Row]:
    """One row per verdict; a task whose models did not learn it keeps its rows' names, not their numbers."""
    rows = []
    for task, d in data["drift"].items():
        for key, v in (d["comparison"].get("verdicts") or {}).items():
            row: Row = {"task": task, "verdict": key, "hypothesis": v.get("hypothesis", key),
                        "primary_hypothesis": v.get("primary_hypothesis", True), "task_learned": task not in untrained}
            if "status" not in v:
                rows.append({**row, "status": "not computed", "error": v.get("error")})
                continue
            if task in untrained:
                rows.append({**row, "status": "not reported (did not learn)"})
                continue
            second = v.get("secondary") or {}
            family = v.get("family") or {}
            rows.append({**row, "status": v["status"], "secondary_status": v.get("secondary_status"),
                         "tests_agree": v.get("tests_agree"), "robust_to_normality": v.get("robust_to_normality"),
                         "estimate": v.get("estimate"), "ci_low": v.get("ci_low"), "ci_high": v.get("ci_high"),
                         "confidence": v.get("confidence"), "ci_method": v.get("ci_method"), "uncertainty": v.get("uncertainty"),
                         "test": (v.get("test") or {}).get("test"), "n": v.get("n"),
                         "p_raw": v.get("p_value"), "p_adjusted": v.get("p_adjusted"),
                         "reverse_p_raw": v.get("reverse_p_value"), "reverse_p_adjusted": v.get("reverse_p_adjusted"),
                         "secondary_test": second.get("test"), "secondary_p_raw": second.get("p_value"),
                         "secondary_p_adjusted": v.get("secondary_p_adjusted"),
                         "secondary_min_attainable_p": second.get("min_attainable_p"),
                         "alpha": v.get("alpha"), "correction": v.get("correction"),
                         "family_size": family.get("size", v.get("n_comparisons")),
                         "seeds_for_80pct_power": (v.get("seeds_needed") or {}).get("t")})
    return rows


def drift_method_rows(data: StudyRecords) -> list[Row]:
    """One row per (task, method): mean and sd of drift, debiased drift, cosine and metric, intervals, noise floor, drift by thirds."""
    rows = []
    for task, d in data["drift"].items():
        for method, s in d["methods"].items():
            floor = (d.get("noise_floor") or {}).get(method) or {}
            row: Row = {"task": task, "method": method, "n_seeds": (s.get("drift") or {}).get("n")}
            for name in ("drift", "drift_debiased", "cosine", "metric"):
                stat = s.get(name) or {}
                row |= {f"{name}_mean": stat.get("mean"), f"{name}_sd": stat.get("sd")}
                if name.startswith("drift"):
                    row |= _bounds(f"{name}_ci_seeds", stat.get("ci_seeds")) | \
                        _bounds(f"{name}_ci_seeds_samples", stat.get("ci_seeds_samples"))
            row |= {"noise_floor_sd": floor.get("sd"), **_bounds("noise_floor_sd_ci", floor.get("sd_ci"))}
            row |= {f"drift_{k}": v for k, v in (s.get("thirds") or {}).items()}
            rows.append(row)
    return rows


def drift_comparison_rows(data: StudyRecords, untrained: set[str]) -> list[Row]:
    """One row per task with a drift reduction: Δ%, the drift ratio and their intervals; tests only where the task was learned."""
    rows = []
    for task, d in data["drift"].items():
        c = d["comparison"]
        if c.get("reduction_percent") is None:
            continue
        tested = task not in untrained
        log_ratio, hier = c.get("log_ratio") or {}, c.get("reduction_ci_seeds_samples") or {}
        delta = c.get("mean_delta_ci_t") or {}
        rows.append({"task": task, "primary": d.get("primary"), "n_pairs": c.get("n_pairs"), "task_learned": tested,
                     "reduction_percent": c.get("reduction_percent"), "reduction_scale": c.get("reduction_scale"),
                     "reduction_percent_of_means": c.get("reduction_percent_of_means"),
                     "reduction_percent_debiased": c.get("reduction_percent_debiased"),
                     "gm_ratio": log_ratio.get("gm_ratio"), **_bounds("gm_ratio_ci", log_ratio.get("gm_ratio_ci")),
                     **_bounds("reduction_percent_ci_seeds", log_ratio.get("reduction_percent_ci")),
                     "reduction_percent_ci_seeds_samples_low": hier.get("low"),
                     "reduction_percent_ci_seeds_samples_high": hier.get("high"),
                     "log_ratio_t_p": _p(log_ratio.get("t_test")) if tested else None,
                     "log_ratio_sign_flip_p": _p(log_ratio.get("sign_flip")) if tested else None,
                     "delta_paired_t_p": _p(c.get("paired_t")) if tested else None,
                     "delta_sign_flip_p": _p(c.get("sign_flip")) if tested else None,
                     "cohens_d": c.get("cohens_d") if tested else None,
                     "mean_delta_ci_low": delta.get("low") if tested else None,
                     "mean_delta_ci_high": delta.get("high") if tested else None})
    return rows


def _seeded(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(runs, key=lambda r: (r["method"], int(r["seed"])))


def drift_run_rows(data: StudyRecords) -> list[Row]:
    """One row per (task, method, seed): dev metric, mean drift, debiased drift and cosine, with intervals over samples."""
    rows = []
    for task, d in data["drift"].items():
        for r in _seeded(d["runs"]):
            rows.append({"task": task, "method": r["method"], "seed": r["seed"], "dev_main_metric": r.get("metric"),
                         "mean_drift": r.get("mean_drift"), **_bounds("mean_drift_ci", r.get("mean_drift_ci")),
                         "mean_drift_debiased": r.get("mean_drift_debiased"),
                         **_bounds("mean_drift_debiased_ci", r.get("mean_drift_debiased_ci")),
                         "mean_cosine": r.get("mean_cosine"), "n_samples": r.get("n_samples")})
    return rows


def drift_layer_rows(data: StudyRecords) -> list[Row]:
    """One row per (task, method, seed, layer): every number each run's drift record holds for the layer."""
    rows = []
    for task, d in data["drift"].items():
        for r in _seeded(d["runs"]):
            for layer in r.get("layers") or []:
                first = {k: layer[k] for k in ("layer", "drift", "drift_debiased", "ci_low", "ci_high") if k in layer}
                rows.append({"task": task, "method": r["method"], "seed": r["seed"], **first, **layer})
    return rows


def layer_test_rows(data: StudyRecords, untrained: set[str]) -> list[Row]:
    """One row per (learned task, layer): the full − LoRA drift test of that layer and its Holm adjustment."""
    rows = []
    for task, d in data["drift"].items():
        per_layer = d["comparison"].get("per_layer") or {}
        if task in untrained:
            continue
        for t in per_layer.get("layers") or []:
            rows.append({"task": task, "layer": t.get("layer"), "mean_delta_full_minus_lora": t.get("mean_delta"),
                         "test": t.get("test"), "n": t.get("n"), "statistic": t.get("statistic"), "p_value": t.get("p_value"),
                         "p_holm": t.get("p_holm"), "reject_holm": t.get("reject_holm"), "alpha": per_layer.get("alpha")})
    return rows


def control_rows(data: StudyRecords) -> list[Row]:
    """One row per (task, pipeline control): its expectation, drifts and whether it passed."""
    return [{"task": task, **{k: c.get(k) for k in ("name", "expectation", "max_drift", "mean_drift", "mean_drift_debiased",
                                                     "passed")}}
            for task, d in data["drift"].items() for c in d.get("controls") or []]


def robustness_rows(data: StudyRecords, untrained: set[str]) -> list[Row]:
    """One row per (learned task, robustness measure): LoRA and full means, their ratio with its interval, direction and tests."""
    rows = []
    for task, d in data["drift"].items():
        rob = d.get("robustness") or {}
        if task in untrained:
            continue
        for r in rob.get("rows") or []:
            ratio = r.get("ratio") or {}
            rows.append({"task": task, "measure": r.get("description"), "is_verdict_measure": r.get("is_verdict_measure"),
                         "lora_mean": r.get("lora_mean"), "full_mean": r.get("full_mean"), "gm_ratio": ratio.get("gm_ratio"),
                         **_bounds("gm_ratio_ci", ratio.get("gm_ratio_ci")), "direction": r.get("direction"),
                         "sign_flip_p": _p(ratio.get("sign_flip")), "t_test_p": _p(ratio.get("t_test")), "note": r.get("note")})
    return rows


def frontier_rows(data: StudyRecords) -> list[Row]:
    """One row per (task, frontier point): metric and drift with their intervals, and whether the selection rule chose it."""
    rows = []
    for task, d in data["drift"].items():
        chosen = {c.get("label") for c in (d.get("selection") or {}).values() if isinstance(c, dict)}
        for r in (d.get("frontier") or {}).get("table") or []:
            rows.append({"task": task, "point": r.get("label"), "method": r.get("method"), "setting": r.get("setting"),
                         "selected": r.get("label") in chosen, "n_seeds": r.get("n_seeds"), "metric_mean": r.get("metric_mean"),
                         **_bounds("metric_ci", r.get("metric_ci")), "drift_gmean": r.get("drift_gmean"),
                         **_bounds("drift_ci", r.get("drift_ci"))})
    return rows


def _numbers(summary: dict[str, Any] | None) -> dict[str, float]:
    """A run summary's numbers (nested records such as intruders by ε left out)."""
    return {k: v for k, v in (summary or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)}


def lens_rows(data: StudyRecords) -> tuple[list[Row], list[Row], list[Row]]:
    """(per-method means, full − LoRA tests, per-run values) of every lens and task.

    Means are over each method's runs (every method, not only the compared pair) of the measures the
    lens's comparison holds; tests are the comparison's own.
    """
    untrained = set(not_learned(data))
    means, tests, runs = [], [], []
    for lens in LENSES:
        for task, result in (data.get(lens) or {}).items():
            comparison = result.get("comparison") or {}
            measures = list(comparison.get("measures") or {})
            by: dict[tuple[str, str], list[float]] = {}
            for r in _seeded(result.get("runs") or []):
                for measure, value in _numbers(r.get("summary")).items():
                    runs.append({"lens": lens, "task": task, "run": r.get("run"), "method": r["method"], "seed": r["seed"],
                                 "measure": measure, "value": value})
                    if measure in measures:
                        by.setdefault((measure, r["method"]), []).append(float(value))
            for (measure, method), values in sorted(by.items(), key=lambda kv: (measures.index(kv[0][0]), kv[0][1])):
                means.append({"lens": lens, "task": task, "measure": measure, "method": method, "n": len(values),
                              "mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None})
            for measure, entry in (comparison.get("measures") or {}).items():
                learned = task not in untrained
                tests.append({"lens": lens, "task": task, "measure": measure, "primary": comparison.get("primary", "lora"),
                              "reference": comparison.get("reference", "full"), "task_learned": learned,
                              "n_pairs": len(comparison.get("seeds") or []),
                              "primary_mean": entry.get("lora_mean"), "primary_sd": entry.get("lora_sd"),
                              "reference_mean": entry.get("full_mean"), "reference_sd": entry.get("full_sd"),
                              "paired_t_p": _p(entry.get("paired_t")) if learned else None,
                              "sign_flip_p": _p(entry.get("sign_flip")) if learned else None})
    return means, tests, runs


_SERVING = ("strategy", "batch_size", "n", "mean_ms", "ci_low_ms", "ci_high_ms", "std_ms", "p50_ms", "p95_ms", "p99_ms",
            "throughput_rps", "ratio_to_merged", "ratio_ci_low", "ratio_ci_high", "p50_ratio_to_merged", "h2",
            "mean_seq_len", "device", "dtype", "threads")


def serving_rows(bench: dict[str, Any] | None) -> tuple[list[Row], list[Row], list[Row]]:
    """(latency per strategy and batch size, correctness checks, resources per strategy) of bench.json."""
    bench = bench or {}
    latency = [{k: r.get(k, r.get("h2_at_most_30pct") if k == "h2" else None) for k in _SERVING}
               for r in bench.get("results") or []]
    checks = [dict(c) for c in bench.get("checks") or []]
    resources = []
    for name, s in (bench.get("strategies") or {}).items():
        memory = s.get("memory") or {}
        resources.append({"strategy": name, "adapters": len(s.get("adapters") or []), "load_s": s.get("load_s"),
                          **{k: memory.get(k) for k in ("model_tensor_bytes", "cuda_resident_bytes", "rss_load_delta_bytes")},
                          "artifact_bytes": s.get("artifact_bytes"), "artifact_estimated": s.get("artifact_estimated")})
    return latency, checks, resources


def all_tables(data: StudyRecords) -> dict[str, list[Row]]:
    """File stem -> rows of every table of the module docstring (empty where the study has none)."""
    untrained = set(not_learned(data))
    means, tests, lens_runs = lens_rows(data)
    latency, checks, resources = serving_rows(data.get("bench"))
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

