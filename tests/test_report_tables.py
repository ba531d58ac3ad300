"""The report's tables as CSV files and summary.json hold the study's numbers as they were saved:
per layer, per run, at full precision; the interactive figure is self-contained and linked only
when written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lorascope.drift.analysis import RunDrift, seed_noise_floor, summarise_method
from lorascope.drift.compare import compare_methods
from lorascope.lenses.compare import compare_variants
from lorascope.report.build import build_report
from lorascope.report.tables import all_tables, write_tables
from tests.conftest import baselines_record
from tests.helpers import study_records

N_LAYERS = 4


def _run(method: str, seed: int, per_layer: np.ndarray, metric: float) -> RunDrift:
    layers = [{"layer": i, "cka": 1 - float(d), "cka_debiased": 1 - float(d), "cosine": 0.9, "drift": float(d),
               "drift_debiased": float(d) * 1.01, "ci_low": float(d) * 0.9, "ci_high": float(d) * 1.1}
              for i, d in enumerate(per_layer)]
    mean = float(per_layer.mean())
    return RunDrift(method=method, seed=seed, metric=metric, layers=layers, mean_drift=mean,
                    mean_drift_ci=(mean * 0.95, mean * 1.05), mean_drift_debiased=mean * 1.01,
                    mean_drift_debiased_ci=(mean * 0.96, mean * 1.06), mean_cosine=0.9, n_samples=40,
                    thirds={"early": float(per_layer[0]), "late": float(per_layer[-1])})


def drift_record(task: str = "sst2", seeds: tuple[int, ...] = (1, 2, 3), seed: int = 0) -> dict:
    """A drift.json as the drift stage writes it: LoRA drifting about a fifth of full FT, rising by layer."""
    rng = np.random.default_rng(seed)
    by = {}
    for method, scale in (("lora", 0.03), ("full", 0.15)):
        by[method] = [_run(method, s, scale * np.arange(1, N_LAYERS + 1) / N_LAYERS * (1 + 0.05 * rng.normal(size=N_LAYERS)),
                           0.80 + 0.01 * s) for s in seeds]
    return {"task": task, "base": "tiny", "pooling": "mean", "n_samples": 40, "n_layers": N_LAYERS, "sample_ids": [f"{task}-{i}" for i in range(40)],
            "controls": [{"name": "base_vs_base", "expectation": "drift = 0", "max_drift": 1e-15, "mean_drift": 1e-16,
                          "mean_drift_debiased": 1e-16, "passed": True}],
            "runs": [r.to_dict() for rs in by.values() for r in rs],
            "methods": {m: summarise_method(rs) for m, rs in by.items()},
            "noise_floor": {m: seed_noise_floor(rs) for m, rs in by.items()},
            "primary": "lora", "comparison": compare_methods(by["lora"], by["full"])}


def weights_record(seeds: tuple[int, ...] = (1, 2, 3)) -> dict:
    """A weight lens's record over 3 seeds a method (numbers made up, every field of the type present)."""
    from lorascope.lenses import WeightsRecord

    matrix = {"relative_update": 0.05, "stable_rank": 2.0, "entropy_rank": 3.0, "top_singular_values": [1.0] * 10,
              "intruder_similarity": [0.9] * 10, "intruders": 0, "epsilon": 0.5, "layer": 0, "intruders_matched": 0}
    runs = [{"run": f"sst2-{m}-s{s}", "method": m, "seed": s,
             "summary": {"matrices": 4, "relative_update": base + 0.001 * s, "stable_rank": 50 * base + (0.3 if m == "lora" else 0.1) * s * s,
                         "entropy_rank": 100 * base + s, "intruders": s % 2, "intruders_matched": 0,
                         "intruders_by_epsilon": {"0.5": 1}, "relative_update_whole": base / 2,
                         "relative_update_whole_without_embeddings": base / 2},
             "summary_whole": {"matrices": 8, "relative_update": base / 2, "relative_update_without_embeddings": base / 2,
                               "adapted_share": 1.0 if m == "lora" else 0.5, "by_type": {}},
             "per_matrix": {"layer.0.q": matrix}}
            for m, base in (("lora", 0.08), ("full", 0.01)) for s in seeds]
    comparison = compare_variants(runs, ("relative_update", "stable_rank", "entropy_rank", "intruders"), {"lora": "lora", "full": "full"})
    scope = {"like_for_like": "q_proj of 1 layer (1 matrix)", "like_for_like_by_variant": {"lora": "q_proj of 1 layer (1 matrix)"},
             "whole_model": "every 2-D matrix of the backbone (8 matrices)", "whole_model_matrices": 8,
             "whole_model_embeddings": [], "whole_model_without_embeddings": "the same (8 matrices)",
             "whole_model_excluded": [], "measures": {}}
    return WeightsRecord.create(config={"top_k": 10, "epsilon": 0.5}, matrices=["layer.0.q"] * 4,
                                matrices_by_variant={"lora": ["layer.0.q"] * 4}, scope=scope,
                                matched_update={"relative_update": 0.03, "labels": ["lora", "full"], "runs": 2 * len(seeds)},
                                runs=runs, comparison=comparison).model_dump()


def bench_record() -> dict:
    """A bench.json: LoRA served unmerged at 1.2× the merged model's latency, at batch sizes 1 and 16."""
    from lorascope.bench.record import BenchRecord

    rows = [{"strategy": s, "batch_size": b, "mean_ms": ms * b, "p50_ms": ms * b, "p95_ms": ms * b, "p99_ms": ms * b,
             "throughput_rps": 1000 / ms, "ratio_to_merged": ratio + 0.001 * b, "ratio_ci_low": ratio - 0.01,
             "ratio_ci_high": ratio + 0.01, "h2": "supported"}
            for b in (1, 16) for s, ms, ratio in (("lora_merged", 8.0, 1.0), ("lora_separate", 9.6, 1.2))]
    return BenchRecord.create(config={"h2_max_ratio": 1.3}, environment={"device_name": "CPU"}, results=rows, checks=[],
                              checks_passed=True, strategies={}).as_json()


def hand_written_study(root: Path, name: str = "handmade", bench: bool = True) -> Path:
    """A study folder holding only what the analyses save (no trained runs): config.yaml, drift.json,
    weights.json and bench.json."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"name": name, "model": "tiny-llama", "tasks": ["sst2"],
                                                       "methods": ["lora", "full"], "seeds": [1, 2, 3]}))
    for rel, record in (("drift/sst2/drift.json", drift_record()), ("weights/sst2/weights.json", weights_record()),
                        *((("bench/bench.json", bench_record()),) if bench else ())):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(record))
    return root


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _data(drift: dict, **extra):
    """The collected study of one task's drift.json, with ``extra`` records beside it."""
    return study_records({"drift": {"sst2": drift}, "runs": [], "baselines": baselines_record({}),
                          "config": {"name": "t"}, "bench": None, **extra})


@pytest.mark.slow
def test_tables_keep_every_number_at_full_precision(tmp_path):
    drift = drift_record()
    written = write_tables(_data(drift, weights={"sst2": weights_record()}, bench=bench_record()), tmp_path / "tables")
    assert {"verdicts", "drift_by_method", "drift_by_layer", "drift_by_run", "lenses", "lens_tests", "serving"} <= set(written)

    layers = _read(written["drift_by_layer"])
    assert len(layers) == len(drift["runs"]) * N_LAYERS  # one row per (task, method, seed, layer)
    for run in drift["runs"]:
        mine = [r for r in layers if r["method"] == run["method"] and int(r["seed"]) == run["seed"]]
        # float(str(x)) == x: written as Python's shortest exact repr, not rounded for display.
        assert [float(r["drift"]) for r in mine] == [row["drift"] for row in run["layers"]]
        assert [int(r["layer"]) for r in mine] == list(range(N_LAYERS))

    verdicts = {r["verdict"]: r for r in _read(written["verdicts"])}
    for key, v in drift["comparison"]["verdicts"].items():
        assert verdicts[key]["status"] == v["status"] and verdicts[key]["hypothesis"] == v["hypothesis"]
        for column, field in (("p_raw", "p_value"), ("p_adjusted", "p_adjusted"), ("estimate", "estimate")):
            assert verdicts[key][column] == ("" if v.get(field) is None else repr(v[field])), (key, column)

    by_method = {r["method"]: r for r in _read(written["drift_by_method"])}
    for method, s in drift["methods"].items():
        assert float(by_method[method]["drift_mean"]) == s["drift"]["mean"]
        assert float(by_method[method]["drift_ci_seeds_low"]) == s["drift"]["ci_seeds"][0]

    lenses = {(r["measure"], r["method"]): r for r in _read(written["lenses"])}
    comparison = weights_record()["comparison"]["measures"]
    assert float(lenses["relative_update", "lora"]["mean"]) == pytest.approx(comparison["relative_update"]["lora_mean"], rel=1e-15)
    assert int(lenses["relative_update", "full"]["n"]) == 3
    tests = {r["measure"]: r for r in _read(written["lens_tests"])}
    assert float(tests["stable_rank"]["paired_t_p"]) == weights_record()["comparison"]["measures"]["stable_rank"]["paired_t"]["p_value"]

    serving = {(r["strategy"], int(r["batch_size"])): r for r in _read(written["serving"])}
    assert float(serving["lora_separate", 16]["ratio_to_merged"]) == 1.2 + 0.016


@pytest.mark.slow
def test_a_task_whose_models_did_not_learn_keeps_its_means_not_its_tests(tmp_path):
    drift = drift_record()
    # Every run at the majority baseline: the report sets the task apart, so do the tables.
    runs = [{"task": "sst2", "method": m, "seed": s, "status": "ok", "main_metric": "accuracy", "dev": {"accuracy": 0.5}}
            for m in ("lora", "full") for s in (1, 2, 3)]
    tables = all_tables(_data(drift, runs=runs, baselines=baselines_record({"sst2": {"accuracy": 0.5}})))
    assert {r["status"] for r in tables["verdicts"]} == {"not reported (did not learn)"}
    assert all("p_raw" not in r for r in tables["verdicts"])
    assert tables["drift_by_method"] and not tables["drift_layer_tests"]
    assert [r["delta_paired_t_p"] for r in tables["drift_comparison"]] == [None]


@pytest.mark.slow
def test_the_report_writes_its_tables_and_a_summary_with_per_layer_and_per_run_numbers(tmp_path):
    study = hand_written_study(tmp_path / "study")
    build_report(study)
    report = study / "report"
    names = {p.stem for p in (report / "tables").glob("*.csv")}
    assert {"verdicts", "drift_by_layer", "drift_by_method", "lenses", "serving"} <= names

    drift = json.loads((study / "drift" / "sst2" / "drift.json").read_text())
    summary = json.loads((report / "summary.json").read_text())
    task = summary["drift"]["sst2"]
    assert task["methods"]["lora"]["layer_drift_mean"] == drift["methods"]["lora"]["layer_drift_mean"]
    assert task["comparison"]["per_layer"] == drift["comparison"]["per_layer"]
    assert len(task["runs"]) == len(drift["runs"])
    for mine, saved in zip(task["runs"], drift["runs"]):
        assert (mine["method"], mine["seed"], mine["mean_drift"]) == (saved["method"], saved["seed"], saved["mean_drift"])
        assert mine["per_layer"]["drift"] == [row["drift"] for row in saved["layers"]]
        assert mine["per_layer"]["layer"] == list(range(N_LAYERS))
    weights = summary["weights"]["sst2"]["runs"]
    assert len(weights) == 6 and weights[0]["summary"]["relative_update"] == 0.081
    text = (report / "summary.json").read_text()
    assert "sample_ids" not in text and "per_matrix" not in text and "top_singular_values" not in text

    # A table the study no longer has does not linger from an earlier build.
    (study / "bench" / "bench.json").unlink()
    build_report(study)
    assert not (report / "tables" / "serving.csv").exists() and (report / "tables" / "verdicts.csv").is_file()


@pytest.mark.slow
def test_the_interactive_drift_figure_is_self_contained_and_linked_only_when_written(tmp_path, monkeypatch):
    pytest.importorskip("plotly")
    study = hand_written_study(tmp_path / "study")
    build_report(study)
    page = study / "report" / "figures" / "drift_by_layer.html"
    html = page.read_text(encoding="utf-8")
    assert "<script src=\"http" not in html and "Plotly.newPlot" in html  # plotly.js inside the file
    assert "seed %{customdata[0]}" in html  # each seed's hover text
    md = (study / "report" / "report.md").read_text()
    assert "](figures/drift_by_layer.html)" in md and "(figures/frontier.html)" not in md  # no sweep, no frontier

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "plotly" else real(name, *a))
    build_report(study)
    assert not page.exists() and "drift_by_layer.html" not in (study / "report" / "report.md").read_text()
