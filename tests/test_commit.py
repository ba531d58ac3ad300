"""The one commit path of every stage's result folder (``lorascope.artifacts.commit``)."""

from __future__ import annotations

import json

import pytest

import lorascope.artifacts as artifacts
from lorascope.artifacts import CONFIG_FILE, PROVENANCE_FILE, amend, commit, commit_failure, partial_path, stored_config
from lorascope.errors import ConfigError, DataError


def _write(folder, name="result.json", value=1):
    (folder / name).write_text(json.dumps({"value": value}))


def test_a_committed_folder_holds_its_settings_provenance_and_result_and_no_partial(tmp_path):
    out = tmp_path / "drift" / "sst2"
    with commit(out, {"n_samples": 10}, seed=3) as partial:
        assert partial == partial_path(out) and not out.exists()
        _write(partial)
    assert stored_config(out) == {"n_samples": 10}
    assert json.loads((out / PROVENANCE_FILE).read_text())["seed"] == 3
    assert json.loads((out / "result.json").read_text()) == {"value": 1}
    assert not partial_path(out).exists()


def test_a_folder_made_with_other_settings_is_an_error_naming_the_key_unless_overwritten(tmp_path):
    out = tmp_path / "unit"
    with commit(out, {"n_samples": 10, "pooling": "mean"}) as partial:
        _write(partial)
    with pytest.raises(ConfigError, match="n_samples"):
        with commit(out, {"n_samples": 20, "pooling": "mean"}):
            pass
    assert stored_config(out)["n_samples"] == 10 and not partial_path(out).exists()
    with commit(out, {"n_samples": 20, "pooling": "mean"}, overwrite=True) as partial:
        _write(partial, value=2)
    assert stored_config(out)["n_samples"] == 20 and json.loads((out / "result.json").read_text())["value"] == 2


def test_the_same_settings_replace_the_result_and_keep_the_named_caches(tmp_path):
    out = tmp_path / "unit"
    with commit(out, {"a": 1}) as partial:
        _write(partial)
        (partial / "reps").mkdir()
        (partial / "reps" / "base.bin").write_bytes(b"cached")
    with commit(out, {"a": 1}, keep=["reps"]) as partial:
        assert (partial / "reps" / "base.bin").read_bytes() == b"cached"
        assert not (partial / "result.json").exists()  # only the caches carry over
        _write(partial, value=2)
    assert json.loads((out / "result.json").read_text())["value"] == 2
    assert (out / "reps" / "base.bin").read_bytes() == b"cached"


def test_an_interrupted_commit_leaves_the_old_result_and_a_partial_that_the_rerun_resumes(tmp_path):
    out = tmp_path / "unit"
    with commit(out, {"a": 1}) as partial:
        _write(partial)
    with pytest.raises(KeyboardInterrupt):
        with commit(out, {"a": 1}) as partial:
            (partial / "step-1").write_text("done")
            raise KeyboardInterrupt
    assert json.loads((out / "result.json").read_text())["value"] == 1  # the finished result is untouched
    with commit(out, {"a": 1}) as partial:
        assert (partial / "step-1").read_text() == "done"  # resumed, not started over
        _write(partial, value=2)
    assert json.loads((out / "result.json").read_text())["value"] == 2


def test_bad_input_leaves_no_partial_and_a_partial_with_other_settings_is_not_resumed(tmp_path):
    out = tmp_path / "unit"
    with pytest.raises(DataError):
        with commit(out, {"a": 1}, discard_on=(DataError,)) as partial:
            _write(partial)
            raise DataError("row 3: no label")
    assert not out.exists() and not partial_path(out).exists()
    with pytest.raises(RuntimeError):
        with commit(out, {"a": 1}) as partial:
            (partial / "step-1").write_text("done")
            raise RuntimeError
    with commit(out, {"a": 2}) as partial:
        assert not (partial / "step-1").exists()
        _write(partial)


def test_a_folder_from_before_folders_stored_their_settings_is_replaced(tmp_path):
    out = tmp_path / "unit"
    out.mkdir()
    _write(out, "drift.json", value=0)
    with commit(out, {"a": 1}) as partial:
        _write(partial, "drift.json", value=1)
    assert json.loads((out / "drift.json").read_text())["value"] == 1 and (out / CONFIG_FILE).exists()
    empty = tmp_path / "not-a-result"
    empty.mkdir()
    (empty / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="no config.yaml"):
        with commit(empty, {"a": 1}):
            pass


def test_a_failure_is_committed_beside_the_partial_it_leaves_to_resume(tmp_path):
    out = tmp_path / "unit"
    with pytest.raises(RuntimeError):
        with commit(out, {"a": 1}) as partial:
            (partial / "checkpoint").write_text("step 10")
            raise RuntimeError("out of memory")
    assert commit_failure(out, {"a": 1}, {"metrics.json": {"status": "failed", "reason": "out of memory"}})
    assert json.loads((out / "metrics.json").read_text())["status"] == "failed"
    assert stored_config(out) == {"a": 1}
    assert (partial_path(out) / "checkpoint").read_text() == "step 10"
    assert not out.with_name("unit.failed").exists()


def test_an_amendment_interrupted_mid_write_leaves_the_committed_result_and_is_redone_whole(tmp_path, monkeypatch):
    out = tmp_path / "drift" / "rte"
    with commit(out, {"a": 1}, seed=5) as partial:
        _write(partial, "drift.json", value=1)
        (partial / "reps").mkdir()
        (partial / "reps" / "base.bin").write_bytes(b"cached")
    real = artifacts.write_json

    def killed_mid_write(path, data):
        path.with_name(path.name + ".tmp").write_text(json.dumps(data)[:5])
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts, "write_json", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        amend(out, {"drift.json": {"value": 2}})
    assert json.loads((out / "drift.json").read_text()) == {"value": 1}  # the committed result, whole
    monkeypatch.setattr(artifacts, "write_json", real)
    amend(out, {"drift.json": {"value": 2}})
    assert json.loads((out / "drift.json").read_text()) == {"value": 2}
    assert (out / "reps" / "base.bin").read_bytes() == b"cached" and stored_config(out) == {"a": 1}
    assert json.loads((out / PROVENANCE_FILE).read_text())["seed"] == 5  # where the result came from is kept
    assert not partial_path(out).exists() and not list(out.rglob("*.tmp"))  # the half-written file went too


def test_an_empty_folder_made_ahead_is_not_an_existing_result(tmp_path):
    out = tmp_path / "made-ahead"
    out.mkdir()
    with commit(out, {"a": 1}) as partial:
        _write(partial)
    assert stored_config(out) == {"a": 1}
