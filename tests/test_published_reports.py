"""Every published study whose records are published rebuilds to its published numbers, and the export
that publishes records copies what the report needs and nothing that only a model needs.

``docs/results/<study>/records`` is ``lorascope study export`` of the study's folder. Its report's
``summary.json``, rebuilt by the current code, must hold every value of the published one at the same
place (it may hold more: sections added since publication). A refactor that changes a published
number fails here.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from lorascope.errors import ConfigError

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
PUBLISHED_WITH_RECORDS = sorted(p.parent.name for p in RESULTS.glob("*/records"))
# Rebuilt on another machine, a float may differ in its last bits (BLAS summation order).
FLOAT_RTOL = 1e-9
# Not results: the stage times as the study's journal had them while its report stage was running.
NOT_COMPARED = ("timings",)


def differences(published: object, rebuilt: object, where: str = "$") -> list[str]:
    """Where ``rebuilt`` lacks or changes a value of ``published`` (JSON values; extra keys allowed)."""
    if isinstance(published, dict):
        if not isinstance(rebuilt, dict):
            return [f"{where}: an object, rebuilt as {type(rebuilt).__name__}"]
        return [d for key, value in published.items()
                for d in (differences(value, rebuilt[key], f"{where}.{key}") if key in rebuilt
                          else [f"{where}.{key}: missing"])]
    if isinstance(published, list):
        if not isinstance(rebuilt, list) or len(rebuilt) != len(published):
            return [f"{where}: {len(published)} items, rebuilt as {rebuilt if not isinstance(rebuilt, list) else len(rebuilt)}"]
        return [d for i, (a, b) in enumerate(zip(published, rebuilt, strict=True)) for d in differences(a, b, f"{where}[{i}]")]
    if isinstance(published, float) and isinstance(rebuilt, (int, float)) and not isinstance(rebuilt, bool):
        same = (math.isnan(published) and math.isnan(rebuilt)) or math.isclose(published, rebuilt, rel_tol=FLOAT_RTOL,
                                                                                 abs_tol=1e-300)
    else:
        same = published == rebuilt and type(published) is type(rebuilt)
    return [] if same else [f"{where}: published {published!r}, rebuilt {rebuilt!r}"]


def test_a_difference_is_found_at_its_place():
    """The comparison itself: a changed number, a missing key and a shorter list are each reported."""
    published = {"a": {"p": 0.012, "n": 8}, "runs": [1.0, 2.0], "name": "x"}
    assert differences(published, {**published, "extra": 1}) == []
    assert differences(published, {**published, "a": {"p": 0.0120000001, "n": 8}}) == [
        "$.a.p: published 0.012, rebuilt 0.0120000001"]
    assert differences(published, {"a": {"p": 0.012}, "runs": [1.0], "name": "x"}) == [
        "$.a.n: missing", "$.runs: 2 items, rebuilt as 1"]
    assert differences({"n": 8}, {"n": 8.0}) == ["$.n: published 8, rebuilt 8.0"]


def test_at_least_two_published_studies_have_records():
    assert len(PUBLISHED_WITH_RECORDS) >= 2, PUBLISHED_WITH_RECORDS


@pytest.mark.parametrize("study", PUBLISHED_WITH_RECORDS)
def test_the_report_rebuilt_from_the_published_records_has_the_published_numbers(study, tmp_path):
    from lorascope.report.build import summary
    from lorascope.report.collect import collect
    from lorascope.report.record import SummaryRecord

    folder = shutil.copytree(RESULTS / study / "records", tmp_path / study)
    built = summary(collect(folder))
    # What the report writes as summary.json, read back into the same record.
    written = built.write(tmp_path)
    assert SummaryRecord.read(written) == built
    rebuilt = json.loads(written.read_text(encoding="utf-8"))
    published = json.loads((RESULTS / study / "summary.json").read_text(encoding="utf-8"))
    assert published["runs"] and published["drift"], "a published summary with nothing to compare"
    for key in NOT_COMPARED:
        published.pop(key, None)
    assert differences(published, rebuilt) == []


def test_export_copies_the_records_and_no_weights(tmp_path, monkeypatch):
    from lorascope.study.export import export_records

    study = tmp_path / "study"
    kept = ["config.yaml", "timings.json", "baselines.json", "train/sst2-lora-s1/metrics.json",
            "train/sst2-lora-s1/provenance.json", "drift/sst2/drift.json", "drift/sst2/layers.csv"]
    left_out = ["train/sst2-lora-s1/adapter/adapter_config.json", "train/sst2-full-s1/model/config.json",
                "train/sst2-full-s1/checkpoint-10/trainer_state.json", "drift/sst2/reps/base.safetensors",
                "report/summary.json", "train/sst2-full-s2.partial/metrics.json", "hpo/study.db",
                "train/sst2-full-s1/model/model.safetensors"]
    for name in kept + left_out:
        (study / name).parent.mkdir(parents=True, exist_ok=True)
        (study / name).write_text(json.dumps({"source": f"{tmp_path}/work/models/base", "cache": f"{tmp_path}/home/.cache/m",
                                              "name": name}), encoding="utf-8")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    copied = export_records(study, tmp_path / "published")

    assert sorted(map(str, copied)) == sorted(kept)
    found = sorted(str(p.relative_to(tmp_path / "published")) for p in (tmp_path / "published").rglob("*") if p.is_file())
    assert found == sorted(kept)
    # Paths under the working directory are written relative to it, others under the home as ~/.
    exported = json.loads((tmp_path / "published" / "timings.json").read_text())
    assert exported["source"] == "models/base" and exported["cache"] == "~/.cache/m"
    with pytest.raises(ConfigError, match="already exists"):
        export_records(study, tmp_path / "published")
    with pytest.raises(ConfigError, match="no records"):
        export_records(tmp_path / "published" / "drift" / "sst2" / "nothing", tmp_path / "again")


def test_a_summary_of_an_older_version_is_refused_in_one_line_saying_how_to_rebuild_it():
    from lorascope.errors import DataError
    from lorascope.report.record import SummaryRecord

    path = RESULTS / PUBLISHED_WITH_RECORDS[0] / "summary.json"  # written before summaries had a version
    with pytest.raises(DataError) as err:
        SummaryRecord.read(path)
    assert str(err.value) == (f"{path}: summary record of schema version 0, written by an older lorascope: rebuild "
                              "it with `lorascope report <study folder>`")
