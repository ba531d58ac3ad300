"""Stage records: written with their kind and schema version, read back into the same type, older
files read, newer or malformed ones refused in one line naming the file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lorascope.errors import DataError
from lorascope.records import Baseline, BaselinesRecord, SanityCheck, SanityRecord

BASELINE = {"task": "sst2", "n_dev": 300, "majority_label": "positive", "majority": {"accuracy": 0.513},
            "random_mean": {"accuracy": 0.5}, "random_sd": {"accuracy": 0.029}, "random_draws": 1000}


def test_a_record_reads_back_into_the_type_that_wrote_it(tmp_path):
    record = BaselinesRecord.create(baselines=[Baseline(**BASELINE)])
    path = record.write(tmp_path)
    raw = json.loads(path.read_text())
    assert path.name == "baselines.json" and raw["kind"] == "baselines" and raw["schema_version"] == 1
    assert BaselinesRecord.read(path) == record
    assert BaselinesRecord.read(path).majority("sst2", "accuracy") == 0.513
    assert record.majority("rte", "accuracy") is None and record.majority("sst2", None) is None


def test_a_failed_sanity_check_keeps_its_nan_loss(tmp_path):
    check = SanityCheck(task="rte", method="full", epochs_run=0, final_loss=float("nan"), threshold=0.1, passed=False,
                        reason="diverged")
    back = SanityRecord.read(SanityRecord.create(settings={"samples": 10}, results=[check]).write(tmp_path))
    assert math.isnan(back.results[0].final_loss) and back.results[0].reason == "diverged" and not back.passed


def test_a_file_from_before_records_were_versioned_is_read(tmp_path):
    """Study folders written before the records had a kind and version (the same fields) stay readable."""
    (tmp_path / "baselines.json").write_text(json.dumps({"baselines": [BASELINE]}))
    (tmp_path / "sanity.json").write_text(json.dumps({"settings": {"samples": 10}, "results": [
        {"task": "sst2", "method": "lora", "epochs_run": 3, "final_loss": 0.05, "threshold": 0.1, "passed": True,
         "reason": None}]}))
    assert BaselinesRecord.read(tmp_path / "baselines.json").baselines[0].majority_label == "positive"
    sanity = SanityRecord.read(tmp_path / "sanity.json")
    assert sanity.passed and sanity.schema_version == SanityRecord.VERSION


@pytest.mark.parametrize("content, message", [
    ({"kind": "baselines", "schema_version": 2, "baselines": []},
     "baselines.json: baselines record of schema version 2; this lorascope reads versions up to 1"),
    ({"kind": "sanity", "schema_version": 1, "settings": {}, "results": []},
     "baselines.json: a 'sanity' record where a 'baselines' record was expected"),
    ({"kind": "baselines", "schema_version": "1", "baselines": []},
     "baselines.json: 'schema_version' must be a non-negative integer (got '1')"),
    ({"kind": "baselines", "schema_version": 1, "baselines": [{**BASELINE, "n_dev": "many"}]},
     "baselines.json: 'baselines.0.n_dev': Input should be a valid integer"),
    ({"kind": "baselines", "schema_version": 1, "baselines": [], "extra": 1}, "baselines.json: unknown key 'extra'"),
    ([BASELINE], "baselines.json: expected a JSON object (a baselines record), got list"),
])
def test_a_newer_foreign_or_malformed_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "baselines.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError) as err:
        BaselinesRecord.read(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_damaged_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "sanity.json"
    path.write_text('{"kind": "sanity", "settings": ')
    with pytest.raises(DataError, match=r"sanity\.json: not a readable sanity record \(JSONDecodeError"):
        SanityRecord.read(path)


# The lenses' records, on the published studies' own files (written before the records had a kind
# and a version): every field read into its type, and nothing lost when written again.
PUBLISHED = Path(__file__).parent.parent / "docs" / "results"
LENS_FILES = [("weights", PUBLISHED / "smollm2-sweep/records/weights/sst2/weights.json"),
              ("weights", PUBLISHED / "mrpc-minilm/records/weights/mrpc/weights.json"),
              ("forgetting", PUBLISHED / "smollm2-sweep/records/forgetting/sst2/forgetting.json"),
              ("probes", PUBLISHED / "mrpc-minilm/records/probes/mrpc/probes.json")]


def _lens_record(kind: str) -> type:
    from lorascope.lenses.records import ForgettingRecord, ProbesRecord, WeightsRecord

    return {"weights": WeightsRecord, "forgetting": ForgettingRecord, "probes": ProbesRecord}[kind]


@pytest.mark.parametrize("kind, path", LENS_FILES, ids=[p.parent.parent.parent.parent.name + "-" + k for k, p in LENS_FILES])
def test_a_published_lens_file_reads_into_its_record_and_writes_back_the_same(tmp_path, kind, path):
    record_type = _lens_record(kind)
    record = record_type.read(path)
    raw = json.loads(path.read_text())
    assert record.schema_version == record_type.VERSION and "schema_version" not in raw  # an upgraded version 0
    comparison = record.comparison
    assert comparison.primary == raw["comparison"]["primary"] and comparison.seeds == raw["comparison"]["seeds"]
    measure = next(iter(raw["comparison"]["measures"]))
    assert comparison.measures[measure].paired_t.p_value == raw["comparison"]["measures"][measure]["paired_t"]["p_value"]
    controls = getattr(record, "controls", [])  # the weight lens has none
    assert [c.name for c in controls] == [c["name"] for c in raw.get("controls", [])]
    assert [c.measured() for c in controls] == [{k: v for k, v in c.items() if k not in ("name", "passed")}
                                                for c in raw.get("controls", [])]
    assert [r.model_dump(exclude_none=True) for r in record.runs] == raw["runs"]  # every run's numbers, whole
    assert record_type.read(record.write(tmp_path)) == record


@pytest.mark.parametrize("kind, path", LENS_FILES, ids=[p.parent.parent.parent.parent.name + "-" + k for k, p in LENS_FILES])
def test_a_lens_file_of_a_newer_version_or_a_broken_comparison_is_one_line(tmp_path, kind, path):
    record_type = _lens_record(kind)
    raw = json.loads(path.read_text())
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**raw, "kind": kind, "schema_version": record_type.VERSION + 1}))
    with pytest.raises(DataError, match=f"newer.json: {kind} record of schema version {record_type.VERSION + 1}"):
        record_type.read(newer)
    broken = tmp_path / "broken.json"
    del raw["comparison"]["measures"][next(iter(raw["comparison"]["measures"]))]["full_n"]
    broken.write_text(json.dumps(raw))
    with pytest.raises(DataError) as err:
        record_type.read(broken)
    assert "broken.json: 'comparison.measures." in str(err.value) and "full_n" in str(err.value)
    assert "\n" not in str(err.value)


# drift.json of every published study: read into DriftRecord, and written back key for key.
DRIFT_FILES = sorted(PUBLISHED.glob("*/records/drift/*/drift.json"))


def test_every_published_study_has_a_drift_file_to_check():
    assert len(DRIFT_FILES) >= 3, DRIFT_FILES


@pytest.mark.parametrize("path", DRIFT_FILES, ids=[p.parents[3].name for p in DRIFT_FILES])
def test_a_published_drift_file_reads_into_its_record_and_writes_back_the_same(tmp_path, path):
    from lorascope.drift.record import DriftRecord, StoredVerdict

    record = DriftRecord.read(path)
    raw = json.loads(path.read_text())
    assert record.schema_version == DriftRecord.VERSION and "schema_version" not in raw  # an upgraded version 0
    # The numbers the report reads, as typed fields.
    assert [r.mean_drift for r in record.runs] == [r["mean_drift"] for r in raw["runs"]]
    assert record.comparison.n_pairs == raw["comparison"]["n_pairs"]
    assert record.comparison.sign_flip.p_value == raw["comparison"]["sign_flip"]["p_value"]
    decided = {k: v for k, v in record.comparison.verdicts.items() if isinstance(v, StoredVerdict)}
    assert {k: v.p_adjusted for k, v in decided.items()} == {
        k: v["p_adjusted"] for k, v in raw["comparison"]["verdicts"].items() if "status" in v}
    if "frontier" in raw:
        assert record.frontier.matched.ratio == raw["frontier"]["matched"]["ratio"]
    # Written again: the same keys and values (an absent optional part stays absent), plus kind and version.
    rewritten = json.loads(record.write(tmp_path).read_text())
    assert rewritten == {**raw, "kind": "drift", "schema_version": DriftRecord.VERSION}
    assert DriftRecord.read(tmp_path / "drift.json") == record


def test_a_drift_file_with_a_broken_verdict_or_a_newer_version_is_one_line(tmp_path):
    from lorascope.drift.record import DriftRecord

    raw = json.loads(DRIFT_FILES[0].read_text())
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**raw, "kind": "drift", "schema_version": DriftRecord.VERSION + 1}))
    with pytest.raises(DataError, match=f"newer.json: drift record of schema version {DriftRecord.VERSION + 1}"):
        DriftRecord.read(newer)
    broken = tmp_path / "broken.json"
    raw["comparison"]["n_pairs"] = "eight"
    broken.write_text(json.dumps(raw))
    with pytest.raises(DataError) as err:
        DriftRecord.read(broken)
    assert "broken.json: 'comparison.n_pairs'" in str(err.value) and "\n" not in str(err.value)


BENCH_V0 = {
    "config": {"model": "minilm", "batch_sizes": [1]},
    "environment": {"device_name": "CPU (x86_64)"},
    "strategies": {"lora_merged": {"description": "LoRA merged into the weights", "group": "merged", "adapters": ["sst2"],
                                   "load_s": 0.07, "artifact_bytes": 90867952, "artifact_estimated": True,
                                   "memory": {"model_tensor_bytes": 90864136, "cuda_resident_bytes": None,
                                              "rss_load_delta_bytes": 52600832, "cuda_forward_peak_bytes": {"1": None}}}},
    "results": [{"strategy": "lora_merged", "batch_size": 1, "mean_ms": 8.1, "p50_ms": 7.9, "ratio_to_merged": None,
                 "check_passed": True}],
    "checks": [{"strategy": "lora_merged", "compared_with": "single-adapter PEFT of sst2", "rows": 32,
                "max_abs_diff": 1.1e-06, "tolerance": 0.0001, "agreement": 1.0, "passed": True}],
    "checks_passed": True,
}


def test_a_bench_file_from_before_versions_reads_and_writes_back_key_for_key(tmp_path):
    from lorascope.bench.record import BenchRecord

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "bench.json").write_text(json.dumps(BENCH_V0))
    record = BenchRecord.read(tmp_path / "old" / "bench.json")
    assert record.rows("lora_merged")[0].mean_ms == 8.1 and record.endpoint is None and record.checks_passed
    assert record.strategies["lora_merged"].memory.rss_load_delta_bytes == 52600832
    # Parts the file lacked (base model, adapters, memory, notes) stay absent when written again.
    rewritten = json.loads(record.write(tmp_path).read_text())
    assert rewritten == {**BENCH_V0, "kind": "bench", "schema_version": BenchRecord.VERSION}


def test_a_bench_file_with_a_broken_row_is_one_line_naming_it(tmp_path):
    from lorascope.bench.record import BenchRecord

    path = tmp_path / "bench.json"
    path.write_text(json.dumps({**BENCH_V0, "results": [{"strategy": "lora_merged", "mean_ms": 8.1}]}))
    with pytest.raises(DataError) as err:
        BenchRecord.read(path)
    assert str(err.value) == f"{path}: 'results.0.batch_size': Field required"


HPO_V0 = {"study": "rte-lora", "storage": "sqlite:///optuna.db", "task": "rte", "method": "lora", "model": "minilm",
          "main_metric": "accuracy", "n_trials": 2, "seed": 0, "counts": {"complete": 1, "pruned": 1},
          "space": {"learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}, "train": {"epochs": 1},
          "best": {"number": 0, "value": 0.61, "params": {"learning_rate": 3e-4, "lora_r": 8}},
          "best_config": "best_config.yaml",
          "trials": [{"number": 0, "state": "COMPLETE", "value": 0.61, "params": {"learning_rate": 3e-4}, "status": "ok",
                      "reason": None, "dev": {"accuracy": 0.61}, "duration_s": 12.5, "worker": "host-1", "folder": "t0"},
                     {"number": 1, "state": "PRUNED", "value": None, "params": {"learning_rate": 9e-4}, "status": "failed",
                      "reason": "diverged", "dev": None, "duration_s": 3.0, "worker": "host-1", "folder": "t1"}]}


def test_the_study_takes_its_tuned_settings_from_the_hpo_record(tmp_path):
    from lorascope.hpo.record import HpoRecord
    from lorascope.study.layout import StudyLayout
    from lorascope.study.stages import tuned_settings

    folder = StudyLayout(tmp_path).hpo("rte", "lora")
    folder.mkdir(parents=True)
    (folder / "hpo.json").write_text(json.dumps(HPO_V0))
    record = HpoRecord.read(folder / "hpo.json")
    assert record.trials[1].reason == "diverged" and record.counts == {"complete": 1, "pruned": 1}
    assert tuned_settings(tmp_path, "rte", "lora") == {"learning_rate": 3e-4, "lora_r": 8}
    assert tuned_settings(tmp_path, "rte", "full") == {}  # no search for it
    (folder / "hpo.json").write_text(json.dumps({**HPO_V0, "best": {"number": 0, "params": {}}}))
    with pytest.raises(DataError, match=r"hpo\.json: 'best\.value': Field required"):
        tuned_settings(tmp_path, "rte", "lora")
