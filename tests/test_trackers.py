"""``report_to`` takes a list, and a study's results reach the trackers it names: read back through
MLflow's own client, TensorBoard's event reader and W&B's transaction log, value for value."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from lorascope.config import build_config, config_to_dict
from lorascope.errors import ConfigError
from lorascope.extras import MissingExtraError
from lorascope.trackers import FOLDER_TAG, SUPERSEDED_TAG, log_study_results, study_results, trackers_of
from lorascope.train.config import TrainConfig
from tests.test_report_tables import N_LAYERS, hand_written_study

EXPERIMENT = "lorascope-tests"


@pytest.mark.parametrize(("given", "stored"), [
    ("none", "none"), ("tensorboard", "tensorboard"), (["tensorboard"], "tensorboard"), ([], "none"),
    (["tensorboard", "mlflow", "tensorboard"], ["mlflow", "tensorboard"]), ("mlflow, tensorboard", ["mlflow", "tensorboard"]),
])
def test_report_to_takes_a_name_or_a_list_in_one_spelling(given, stored):
    cfg = TrainConfig(report_to=given)
    assert cfg.report_to == stored
    # A stored config reads back as it was written: a folder made before lists existed still matches.
    assert config_to_dict(TrainConfig.model_validate(config_to_dict(cfg))) == config_to_dict(cfg)


def test_a_stored_none_equals_the_default_and_none_cannot_join_a_list():
    assert config_to_dict(TrainConfig())["report_to"] == "none"
    assert config_to_dict(TrainConfig.model_validate({"report_to": "none"})) == config_to_dict(TrainConfig())
    with pytest.raises(ConfigError, match="report_to.*none and all stand alone"):
        build_config(TrainConfig, {"report_to": ["none", "mlflow"]})
    with pytest.raises(ConfigError, match="unknown logger 'bogus'"):
        build_config(TrainConfig, {"report_to": ["mlflow", "bogus"]})


def test_which_trackers_a_report_to_names():
    assert trackers_of("none") == [] and trackers_of(["comet_ml"]) == []  # the Trainer's curves only
    assert trackers_of(["tensorboard", "mlflow"]) == ["mlflow", "tensorboard"]
    assert set(trackers_of("all")) >= {"mlflow", "tensorboard"}  # the installed ones, as the Trainer's "all"


def test_a_missing_tracker_package_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(MissingExtraError) as err:
        log_study_results(hand_written_study(tmp_path / "s"), ["tensorboard", "mlflow"])
    assert str(err.value) == ("report_to: mlflow (the study's results) needs the trackers extra: "
                              "pip install 'lorascope[trackers]' (missing: mlflow)")
    assert not (tmp_path / "s" / "tensorboard").exists()  # checked before anything is logged


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch) -> str:
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    return uri


def _mlflow_runs(uri: str, study: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`{FOLDER_TAG}` = '{study.resolve()}'")


def _tensorboard(study: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(study / "tensorboard"))
    acc.Reload()
    return acc


@pytest.mark.slow
def test_verdicts_drift_lenses_and_serving_reach_mlflow_and_tensorboard(tmp_path, mlflow_store):
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient

    study = hand_written_study(tmp_path / "study")
    drift = json.loads((study / "drift" / "sst2" / "drift.json").read_text())
    done = log_study_results(study, ["mlflow", "tensorboard"])
    assert set(done) == {"mlflow", "tensorboard"}

    client = MlflowClient(mlflow_store)
    (run,) = _mlflow_runs(mlflow_store, study)
    assert run.info.run_name == "handmade" and run.data.params["model"] == "tiny-llama"
    for key, v in drift["comparison"]["verdicts"].items():
        assert run.data.tags[f"verdict/sst2/{key}/status"] == v["status"]
        if v.get("p_value") is not None:
            assert run.data.metrics[f"verdict/sst2/{key}/p_raw"] == v["p_value"]
            assert run.data.metrics[f"verdict/sst2/{key}/p_adjusted"] == v["p_adjusted"]
            assert run.data.metrics[f"verdict/sst2/{key}/estimate"] == v["estimate"]
    for method, s in drift["methods"].items():
        history = sorted(client.get_metric_history(run.info.run_id, f"drift_by_layer/sst2/{method}"), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(N_LAYERS))
        assert [m.value for m in history] == s["layer_drift_mean"]  # the mean over seeds, layer by layer
    weights = json.loads((study / "weights" / "sst2" / "weights.json").read_text())["comparison"]["measures"]
    assert run.data.metrics["weights/sst2/relative_update/lora"] == pytest.approx(weights["relative_update"]["lora_mean"], rel=1e-15)
    ratio = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "serving/lora_separate/ratio_to_merged")}
    assert ratio == {1: 1.2 + 0.001, 16: 1.2 + 0.016}  # step = batch size

    acc = _tensorboard(study)
    for method, s in drift["methods"].items():
        events = acc.Scalars(f"drift_by_layer/sst2/{method}")
        assert [e.step for e in events] == list(range(N_LAYERS))
        assert [e.value for e in events] == pytest.approx(s["layer_drift_mean"], rel=1e-6)  # TensorBoard keeps float32
    assert [e.value for e in acc.Scalars("verdict/sst2/lower/p_adjusted")] == \
        pytest.approx([drift["comparison"]["verdicts"]["lower"]["p_adjusted"]], rel=1e-6)
    assert {e.step: e.value for e in acc.Scalars("serving/lora_separate/ratio_to_merged")} == pytest.approx({1: 1.201, 16: 1.216})


@pytest.mark.slow
def test_logging_again_is_idempotent_and_changed_results_get_a_new_run(tmp_path, mlflow_store):
    pytest.importorskip("tensorboard")
    study = hand_written_study(tmp_path / "study")
    first = log_study_results(study, ["mlflow", "tensorboard"])
    again = log_study_results(study, ["mlflow", "tensorboard"])
    assert again["mlflow"] == first["mlflow"] + " (unchanged)" and len(_mlflow_runs(mlflow_store, study)) == 1
    assert len(_tensorboard(study).Scalars("drift_by_layer/sst2/lora")) == N_LAYERS  # no second point per layer
    assert len(list((study / "tensorboard").iterdir())) == 1

    (study / "bench" / "bench.json").unlink()  # e.g. a resumed study: its results changed
    log_study_results(study, ["mlflow"])
    newest, older = sorted(_mlflow_runs(mlflow_store, study), key=lambda r: r.info.start_time, reverse=True)
    assert older.data.tags[SUPERSEDED_TAG] == newest.info.run_id and SUPERSEDED_TAG not in newest.data.tags
    assert not any(k.startswith("serving/") for k in newest.data.metrics)


def _wandb_records(path: Path) -> list:
    """The records of a W&B transaction log (``.wandb``): a 7-byte file header, then LevelDB's log
    format (32 KiB blocks; each fragment a 7-byte header: CRC, little-endian length, type)."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunk, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if pos + 7 + length > len(data):  # W&B's writer is still on this fragment: read again later
            break
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last fragment of one
            record = pb.Record()
            try:
                record.ParseFromString(chunk)
            except DecodeError:  # a record caught mid-write: the caller reads the log again
                break
            out.append(record)
            chunk = b""
    return out


def _item_key(item) -> str:
    """A summary or history item's name (a name with "/" is stored as a one-element nested key)."""
    return item.key or "/".join(item.nested_key)


@pytest.mark.slow
def test_results_reach_an_offline_wandb_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    study = hand_written_study(tmp_path / "study")
    drift = json.loads((study / "drift" / "sst2" / "drift.json").read_text())
    where = Path(log_study_results(study, ["wandb"])["wandb"])
    assert where.parent == study / "wandb" and where.name.startswith("offline-run-")
    # W&B's service may still be writing the log when finish() returns: read it until the run's exit is in it.
    deadline = time.monotonic() + 30
    while True:
        records = _wandb_records(next(where.glob("run-*.wandb")))
        summary = {_item_key(item): json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "summary"
                   for item in r.summary.update}
        if "verdict/sst2/lower/status" in summary or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    verdicts = drift["comparison"]["verdicts"]
    assert summary["verdict/sst2/lower/status"] == verdicts["lower"]["status"]
    assert summary["verdict/sst2/lower/p_adjusted"] == verdicts["lower"]["p_adjusted"]
    rows = [{_item_key(item): json.loads(item.value_json) for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]
    by_layer = {row["layer"]: row["drift_by_layer/sst2/lora"] for row in rows if "drift_by_layer/sst2/lora" in row}
    assert by_layer == dict(enumerate(drift["methods"]["lora"]["layer_drift_mean"]))
    assert log_study_results(study, ["wandb"])["wandb"] == f"{where} (unchanged)"


@pytest.mark.slow
def test_a_study_run_logs_its_results_beside_the_training_curves(glue_dir, tmp_path, mlflow_store):
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient

    from lorascope.study import load_study, run_study

    cfg = {"name": "tracked", "model": "tiny-llama", "tasks": ["rte"], "methods": ["lora", "full"], "seeds": [1, 2],
           "out": str(tmp_path / "study"), "stages": ["train", "drift", "report"],
           "train": {"train_limit": 24, "eval_limit": 16, "epochs": 1, "batch_size": 8, "max_length": 32,
                     "report_to": ["tensorboard", "mlflow"]},
           "drift": {"n_samples": 16, "max_length": 32, "bootstrap": 50}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = run_study(load_study(path))

    drift = json.loads((out / "drift" / "rte" / "drift.json").read_text())
    results = study_results(out)
    client = MlflowClient(mlflow_store)
    (run,) = _mlflow_runs(mlflow_store, out)
    assert run.data.tags == {**run.data.tags, **results.tags}  # every status, as the report states it
    for method, s in drift["methods"].items():
        history = sorted(client.get_metric_history(run.info.run_id, f"drift_by_layer/rte/{method}"), key=lambda m: m.step)
        assert [m.value for m in history] == s["layer_drift_mean"] and len(history) == drift["n_layers"]
    acc = _tensorboard(out)
    assert [e.value for e in acc.Scalars("drift_by_layer/rte/lora")] == \
        pytest.approx(drift["methods"]["lora"]["layer_drift_mean"], rel=1e-6, abs=1e-12)
    # The Trainer's curves went to the same store: one run per trained unit, with its loss.
    experiment = client.get_experiment_by_name(EXPERIMENT)
    curves = [r for r in client.search_runs([experiment.experiment_id]) if FOLDER_TAG not in r.data.tags]
    assert len(curves) == 4 and all("train_loss" in r.data.metrics for r in curves)
    assert (out / "report" / "tables" / "drift_by_layer.csv").is_file()
    # Each run keeps its TensorBoard curves (the Trainer's default folder is deleted with the checkpoints).
    for run_folder in (out / "train").iterdir():
        assert list((run_folder / "tensorboard").glob("events.out.tfevents.*")), run_folder
