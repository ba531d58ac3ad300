"""`study status` shows what a study folder holds, and `study run` says when units failed.

Status: a score of 0.0 is shown as 0.0; only the stages the study runs are listed; a skipped,
failed or interrupted stage is shown as such, not as pending; a relative folder is found as the
user's shell sees it. Run: failed training units end the run with exit status 1 and one line
naming them. The folders are built by hand (records, journal): nothing is trained.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lorascope.artifacts import FolderLock
from lorascope.cli.main import app
from lorascope.run_folder import RunRecord
from lorascope.study import StudyConfig, load_study, run_study
from lorascope.study.runner import check_study_config, failed_units


def make_study(tmp_path: Path, stages: list[str], **extra) -> tuple[Path, StudyConfig]:
    """A study folder holding only its config.yaml, as `study run` writes it."""
    out = tmp_path / "study"
    settings = {"name": "s", "model": "tiny-llama", "tasks": ["rte"], "methods": ["lora"], "seeds": [1],
                "out": str(out), "stages": stages, **extra}
    cfg = StudyConfig.model_validate(settings)
    check_study_config(out, cfg)
    return out, cfg


def record(out: Path, unit: str, **metrics) -> None:
    folder = out / "train" / unit
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"task": "rte", "method": "lora", "seed": 1, **metrics}))


def journal(out: Path, *invocations: dict) -> None:
    (out / "timings.json").write_text(json.dumps({"total_s": {}, "invocations": list(invocations)}))


def status(folder: str | Path, **env: str) -> dict[str, tuple[str, str]]:
    """``{unit: (status, detail)}`` from the status table."""
    result = CliRunner().invoke(app, ["study", "status", str(folder)], terminal_width=300, env=env or None,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 3 and cells[0] != "unit":
            rows[cells[0]] = (cells[1], cells[2])
    status.last_output = result.stdout  # type: ignore[attr-defined]
    return rows


# --------------------------------------------------------------------------------------------
# What the table shows.


def test_a_score_of_zero_is_shown_as_zero(tmp_path):
    out, _ = make_study(tmp_path, ["train"], seeds=[1, 2])
    record(out, "rte-lora-s1", status="ok", main_metric="matthews", dev={"matthews": 0.0})
    record(out, "rte-lora-s2", status="ok", main_metric="matthews", dev={"matthews": 0.25})
    rows = status(out)
    assert rows["train rte-lora-s1"] == ("done", "matthews 0.000")
    assert rows["train rte-lora-s2"] == ("done", "matthews 0.250")  # MCC on its own scale
    assert "nan" not in status.last_output  # type: ignore[attr-defined]


def test_only_the_stages_the_study_runs_are_listed(tmp_path):
    out, cfg = make_study(tmp_path, ["baselines", "train"])
    assert set(status(out)) == {"baselines", "train rte-lora-s1"}
    assert yaml.safe_load((out / "config.yaml").read_text())["stages"] == ["baselines", "train"]
    # The next run plans other stages (they may change freely): the folder lists those, and what is done.
    (out / "baselines.json").write_text("{}")
    check_study_config(out, cfg.model_copy(update={"stages": ["drift", "report"]}))
    rows = status(out)
    assert set(rows) == {"baselines", "drift rte", "report"}
    assert rows["baselines"][0] == "done" and rows["drift rte"][0] == "pending"


def test_skipped_failed_and_interrupted_stages_are_not_pending(tmp_path):
    out, _ = make_study(tmp_path, ["train", "drift", "weights", "forgetting", "probes", "bench"])
    record(out, "rte-lora-s1", status="failed", reason="diverged: training loss nan\nat step 3")
    (out / "drift").mkdir()
    (out / "drift" / "skipped.json").write_text(json.dumps({"rte": "no finished training runs"}))
    journal(out,
            {"only": {}, "planned": ["train", "drift", "weights", "forgetting", "probes", "bench"],
             "stages": {"train": 1.0, "drift": 1.0, "weights": 1.0},
             "failed": {"stage": "forgetting", "error": "RuntimeError: CUDA out of memory"}},
            # Killed during probes: its journal still names the stage as running.
            {"only": {"task": "rte"}, "planned": ["probes", "bench"], "stages": {}, "running": "probes"})
    rows = status(out)
    assert rows["train rte-lora-s1"] == ("failed", "diverged: training loss nan")  # the first line
    assert rows["drift rte"] == ("skipped", "no finished training runs")
    assert rows["weights rte"][0] == "skipped"  # the stage finished and measured nothing for rte
    assert rows["forgetting rte"] == ("failed", "RuntimeError: CUDA out of memory")
    assert rows["probes rte"][0] == "interrupted"
    assert rows["bench"] == ("pending", "")  # never reached


def test_the_live_run_is_running_and_named(tmp_path):
    out, _ = make_study(tmp_path, ["train", "drift"])
    (out / "train" / "rte-lora-s1.partial").mkdir(parents=True)
    journal(out, {"only": {}, "planned": ["train", "drift"], "stages": {}, "running": "train"})
    assert status(out)["train rte-lora-s1"][0] == "interrupted"  # nobody holds the folder
    with FolderLock.acquire(out):
        rows = status(out)
    assert rows["train rte-lora-s1"][0] == "running"
    assert f"a study run is in progress in this folder (pid {os.getpid()} on" in status.last_output  # type: ignore[attr-defined]


def test_run_study_keeps_its_journal(tmp_path, monkeypatch):
    """A stage that crashes is recorded as failed; one cut off (killed, interrupted) as interrupted."""
    from lorascope.study import stages

    out, cfg = make_study(tmp_path, ["sanity", "baselines"])

    def crash(ctx):
        raise RuntimeError("a library error\nwith its second line")

    monkeypatch.setitem(stages.STAGE_FUNCS, "sanity", lambda ctx: None)
    monkeypatch.setitem(stages.STAGE_FUNCS, "baselines", crash)
    with pytest.raises(RuntimeError):
        run_study(cfg)
    rows = status(out)
    assert rows["sanity"] == ("skipped", "")  # finished, wrote nothing
    assert rows["baselines"] == ("failed", "RuntimeError: a library error")

    def cut_off(ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(stages.STAGE_FUNCS, "baselines", cut_off)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg)
    assert status(out)["baselines"][0] == "interrupted"


# --------------------------------------------------------------------------------------------
# Where the folder is.


def test_a_relative_folder_is_found(tmp_path, monkeypatch):
    out, _ = make_study(tmp_path, ["train"])
    monkeypatch.chdir(tmp_path)
    assert "train rte-lora-s1" in status("study")
    assert "train rte-lora-s1" in status("./study/")


def test_a_relative_folder_through_a_symlinked_directory(tmp_path, monkeypatch):
    """`cd link/work` then `study status ../study`: the shell resolves .. in the link's parent."""
    out, _ = make_study(tmp_path / "project", ["train"])
    (tmp_path / "elsewhere" / "work").mkdir(parents=True)
    (tmp_path / "project" / "work").symlink_to(tmp_path / "elsewhere" / "work")
    monkeypatch.chdir(tmp_path / "project" / "work")
    # The kernel's .. of the working directory is elsewhere/; the user's (and $PWD's) is project/.
    assert not Path("../study").exists()
    assert "train rte-lora-s1" in status("../study", PWD=str(tmp_path / "project" / "work"))


def test_a_home_relative_folder_is_found(tmp_path):
    out, _ = make_study(tmp_path, ["train"])
    assert "train rte-lora-s1" in status("~/study", HOME=str(tmp_path))


def test_a_missing_relative_folder_names_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["study", "status", "nothere"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: nothere: not a study folder (no such folder in {tmp_path})"


# --------------------------------------------------------------------------------------------
# `study run` with failed units: exit status 1 and one line naming them.


def _fake_training(monkeypatch, fail: dict[str, Exception]) -> None:
    """Training replaced by a record written at once; the methods in ``fail`` raise instead."""
    import lorascope.train

    def run_train(cfg, folder, **kwargs):
        if cfg.method in fail:
            raise fail[cfg.method]
        metrics = {"status": "ok", "task": cfg.task, "method": cfg.method, "seed": cfg.seed,
                   "main_metric": "accuracy", "dev": {"accuracy": 0.5}}
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(metrics))
        return RunRecord.model_validate(metrics)

    monkeypatch.setattr(lorascope.train, "run_train", run_train)


def _study_file(tmp_path: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "model": "tiny-llama", "tasks": ["rte"], "methods": ["lora", "full"],
                                    "seeds": [1], "stages": ["train"], "out": str(tmp_path / "study")}))
    return path


def test_a_failed_unit_ends_the_run_with_exit_1_and_names_it(tmp_path, monkeypatch):
    _fake_training(monkeypatch, {"full": OSError(28, "No space left on device")})
    result = CliRunner().invoke(app, ["study", "run", str(_study_file(tmp_path))], terminal_width=200)
    assert result.exit_code == 1, result.output
    assert "study complete" not in result.stdout and "study finished with failed units" in result.stdout
    assert result.stderr.splitlines() == [
        f"error: 1 of 2 training units failed: rte-full-s1 (OSError: [Errno 28] No space left on device); "
        f"records in {tmp_path / 'study' / 'train'} (a rerun retries crashed units)"]
    # The other unit's result is kept.
    assert json.loads((tmp_path / "study" / "train" / "rte-lora-s1" / "metrics.json").read_text())["status"] == "ok"


def test_a_run_without_failures_ends_with_exit_0(tmp_path, monkeypatch):
    _fake_training(monkeypatch, {})
    result = CliRunner().invoke(app, ["study", "run", str(_study_file(tmp_path))])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_a_failure_that_cannot_be_recorded_is_still_a_failure(tmp_path, monkeypatch):
    """On a full disk even the failure record may not fit: nothing half-written stays, the unit is retried."""
    import lorascope.artifacts as artifacts
    import lorascope.study.runner  # noqa: F401  (bound to the real write_json first: the study's journal still writes)

    _fake_training(monkeypatch, {"full": OSError(28, "No space left on device")})

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts, "write_json", disk_full)  # the failure record's writer (commit_failure)
    cfg = load_study(_study_file(tmp_path))
    out = run_study(cfg)
    assert failed_units(cfg, out) == [("rte-full-s1", "no record written (see the output above)")]
    assert sorted(p.name for p in (out / "train").iterdir()) == ["rte-lora-s1"]  # no .failed, no record
    assert status(out)["train rte-full-s1"] == ("failed", "no record written (see the run's output)")


def test_failures_are_those_of_the_slice_run(tmp_path):
    out, cfg = make_study(tmp_path, ["train"], tasks=["rte", "mrpc"])
    record(out, "rte-lora-s1", status="failed", reason="RuntimeError: worker lost")
    record(out, "mrpc-lora-s1", status="ok")
    assert failed_units(cfg, out) == [("rte-lora-s1", "RuntimeError: worker lost")]
    assert failed_units(cfg, out, {"task": "mrpc"}) == []
    assert failed_units(cfg.model_copy(update={"stages": ["drift"]}), out) == []  # no train stage: no units


def test_status_shows_the_seeds_that_wait_for_the_sweep_selection(tmp_path):
    sweep = {"lora": {"lr": [1e-3, 2e-3]}}
    out, _ = make_study(tmp_path, ["train"], methods=["lora"], seeds=[1, 2, 3], sweep_seeds=[1], sweep=sweep,
                        train={"selection_split": 0.2})
    rows = status(out)
    assert {name for name in rows if name.startswith("train ")} == {
        "train rte-lora_lr0p001-s1", "train rte-lora_lr0p002-s1", "train rte-lora ×2"}
    assert rows["train rte-lora ×2"][0] == "pending"
    for lr, loss in (("0p001", 0.7), ("0p002", 0.4)):
        record(out, f"rte-lora_lr{lr}-s1", status="ok", variant=f"lora_lr{lr}",
               selection={"split": "selection_split", "by": "loss", "best_value": loss})
    rows = status(out)
    assert "train rte-lora ×2" not in rows
    assert rows["train rte-lora_lr0p002-s2"][0] == "pending" and "train rte-lora_lr0p001-s2" not in rows
