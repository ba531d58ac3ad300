"""A whole study on the user's own data: a single-sentence and a sentence-pair task from task files
in a subfolder, named relatively in the study file, the study run from another directory.

Every stage the quickstart runs (sanity, baselines, train, drift, the weight lens, bench, report)
plus the probe lens, on tiny-llama and a few dozen rows, so that each stage has something to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lorascope.cli.main import app
from lorascope.config import build_config, config_to_dict
from lorascope.errors import ConfigError
from lorascope.study import StudyConfig, load_study
from lorascope.study.config import hpo_config
from lorascope.study.units import train_units
from tests.conftest import write
from tests.helpers import prose_faults

pytestmark = pytest.mark.usefixtures("single_thread")
REPO = Path(__file__).resolve().parents[1]

STAGES = ["sanity", "baselines", "train", "drift", "weights", "probes", "bench", "report"]
TASKS = ("reviews", "pairs")
GOOD = ["the cat sat on the mat", "she reads every morning", "they have finished the work", "we saw a film"]
BAD = ["cat the on sat mat the", "reads she morning every", "the work finished have they", "film a saw we"]


def own_tasks(folder: Path) -> None:
    """``folder/tasks``: a CSV single-sentence task and a JSONL pair task, each with its task file."""
    rows = [f'"{(GOOD if i % 2 else BAD)[i % 4]}, {i}",{"good" if i % 2 else "bad"}' for i in range(48)]
    write(folder / "tasks" / "data" / "reviews_train.csv", "\n".join(["text,label", *rows[:32]]) + "\n")
    write(folder / "tasks" / "data" / "reviews_dev.csv", "\n".join(["text,label", *rows[32:]]) + "\n")
    write(folder / "tasks" / "reviews.yaml", "name: reviews\nfiles: {train: data/reviews_train.csv, "
          "validation: data/reviews_dev.csv}\ntext_columns: text\nlabel_column: label\n")
    pairs = [{"premise": GOOD[i % 4] + f" {i}", "hypothesis": GOOD[i % 4] if i % 2 else BAD[i % 4], "same": i % 2}
             for i in range(48)]
    write(folder / "tasks" / "pairs_train.jsonl", "\n".join(json.dumps(p) for p in pairs[:32]) + "\n")
    write(folder / "tasks" / "pairs_dev.jsonl", "\n".join(json.dumps(p) for p in pairs[32:]) + "\n")
    write(folder / "tasks" / "pairs.yaml", "name: pairs\nfiles: {train: pairs_train.jsonl, validation: pairs_dev.jsonl}\n"
          "text_columns: [premise, hypothesis]\nlabel_column: same\nlabel_names: {0: different, 1: same}\n"
          "metrics: [accuracy, f1]\n")


def custom_study(folder: Path) -> Path:
    own_tasks(folder)
    study = {
        "name": "own-data",
        "model": "tiny-llama",
        "tasks": ["tasks/reviews.yaml", "tasks/pairs.yaml"],  # relative to this file, not to where it runs
        "methods": ["lora", "full"],
        "seeds": [1, 2],
        "out": "out",  # relative to the current directory, as documented
        "stages": STAGES,
        "train": {"epochs": 1, "batch_size": 8, "max_length": 32, "logging_steps": 2},
        "method_train": {"lora": {"lr": 5e-3}, "full": {"lr": 1e-3}},
        "task_train": {"pairs": {"logging_steps": 1}},  # keyed by the task's name
        "sanity": {"samples": 4, "max_epochs": 2, "threshold": 10.0},
        "drift": {"n_samples": 16, "max_length": 32, "bootstrap": 50},
        "probes": {"n_train": 16, "n_dev": 8, "max_length": 32},
        "bench": {"batch_sizes": [2], "requests": 2, "warmup": 0, "overrides": {"device": "cpu", "check_rows": 4}},
    }
    return write(folder / "study.yaml", yaml.safe_dump(study, sort_keys=False))


@pytest.mark.slow  # trains 8 runs and runs every stage: about 30 s
def test_whole_study_on_own_tasks_from_another_directory(tmp_path, monkeypatch):
    study_file = custom_study(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(app, ["study", "run", "../project/study.yaml"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.output and "synthetic" not in result.output, result.output
    out = elsewhere / "out"
    assert study_file.is_file() and not (tmp_path / "project" / "out").exists()

    # Run folders, per-task results and the stored config are named by the tasks' names.
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(
        f"{t}-{m}-s{s}" for t in TASKS for m in ("lora", "full") for s in (1, 2))
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["tasks"] == list(TASKS)
    assert stored["task_files"] == {t: str(tmp_path / "project" / "tasks" / f"{t}.yaml") for t in TASKS}
    assert [r["task"] for r in json.loads((out / "sanity" / "sanity.json").read_text())["results"]] == ["reviews"] * 2 + ["pairs"] * 2
    assert [b["task"] for b in json.loads((out / "baselines" / "baselines.json").read_text())["baselines"]] == list(TASKS)
    for task, other in (TASKS, TASKS[::-1]):
        drift = json.loads((out / "drift" / task / "drift.json").read_text())
        assert drift["task"] == task and len(drift["runs"]) == 4
        weights = json.loads((out / "weights" / task / "weights.json").read_text())
        assert len(weights["runs"]) == 4
        probes = json.loads((out / "probes" / task / "probes.json").read_text())
        assert probes["probe_tasks"] == [other] and len(probes["runs"]) == 4

    # The bench served the study's own adapters (first seed of each task, then a second seed), by name.
    bench = json.loads((out / "bench" / "bench.json").read_text())
    assert [a["name"] for a in bench["adapters"]] == ["reviews", "pairs", "reviews-s2"]
    assert [a["task"] for a in bench["adapters"]] == ["reviews", "pairs", "reviews"]
    assert bench["synthetic_adapters"] is False and bench["checks_passed"] is True

    # No stage skipped a task, and every stage ran.
    assert not list(out.glob("*/skipped.json"))
    timings = json.loads((out / "timings.json").read_text())
    assert list(timings["invocations"][0]["stages"]) == STAGES
    md = (out / "report" / "report.md").read_text()
    assert "tasks reviews, pairs;" in md and prose_faults(md) == []
    for heading in ("## Representation drift", "## Weight lens", "## Probe retention", "## Serving cost"):
        assert heading in md
    assert "| reviews |" in md and "| pairs |" in md and "| reviews.yaml" not in md
    assert "No drift analysis" not in md and "Failed units" not in md

    # The stored config is the study's: status reads it from yet another directory, by task name.
    monkeypatch.chdir(tmp_path)
    status = CliRunner().invoke(app, ["study", "status", str(out)], terminal_width=200)
    assert status.exit_code == 0 and "train pairs-full-s2" in status.output and "weights reviews" in status.output


def test_task_files_resolve_beside_the_study_file_and_tasks_go_by_name(tmp_path, monkeypatch):
    study_file = custom_study(tmp_path / "project")
    monkeypatch.chdir(tmp_path)  # not the study file's folder
    cfg = load_study(study_file.relative_to(tmp_path))
    assert cfg.tasks == ["reviews", "pairs"]
    task_file = tmp_path / "project" / "tasks" / "reviews.yaml"
    assert cfg.task_files["reviews"] == str(task_file)
    # A unit trains on the task file, and its folder, its per-task settings and --only go by the name.
    assert cfg.train_config("reviews", "lora", 1).task == str(task_file)
    assert cfg.train_config("pairs", "lora", 1).logging_steps == 1
    assert [u.name for u in train_units(cfg, {"task": "pairs", "method": "full"})] == ["pairs-full-s1", "pairs-full-s2"]
    assert hpo_config(cfg, "reviews", "lora").resolved_study_name() == "hpo-reviews-lora-tiny-llama"
    # The stored config (config.yaml) reads back as the same study, without the task files.
    stored = config_to_dict(cfg)
    task_file.unlink()
    assert StudyConfig.model_validate(stored) == cfg


def test_a_glue_task_goes_by_its_registry_name():
    cfg = StudyConfig(tasks=["SST-2", "rte"])
    assert cfg.tasks == ["sst2", "rte"] and cfg.task_files == {}
    assert cfg.train_config("sst2", "lora", 1).task == "sst2"


def test_two_tasks_of_one_name_are_refused_naming_both(tmp_path):
    own_tasks(tmp_path)
    write(tmp_path / "copy" / "reviews.yaml", (tmp_path / "tasks" / "reviews.yaml").read_text().replace(
        "data/", "../tasks/data/"))
    study = write(tmp_path / "study.yaml", "tasks: [tasks/reviews.yaml, copy/reviews.yaml]\n")
    with pytest.raises(ConfigError, match=r"study\.yaml: tasks: '.*/tasks/reviews\.yaml' and '.*/copy/reviews\.yaml' "
                                          r"are both named 'reviews'; give each task its own name"):
        load_study(study)
    with pytest.raises(ConfigError, match=r"tasks: 'sst2' and 'SST-2' are both named 'sst2'"):
        build_config(StudyConfig, {"tasks": ["sst2", "SST-2"]})


@pytest.mark.parametrize("text,message", [
    ("tasks: [tasks/nothere.yaml]\n", r"study\.yaml: tasks: .*/tasks/nothere\.yaml: task file not found"),
    ("tasks: [cola]\n", r"study\.yaml: tasks: task 'cola': expected one of"),
    ("tasks: [tasks/reviews.yaml]\ntask_train: {tasks/reviews.yaml: {lr: 1.0e-3}}\n",
     r"task_train\.tasks/reviews\.yaml: per-task settings are keyed by the task's name \(reviews\)"),
])
def test_bad_task_entries_name_the_entry(tmp_path, text, message):
    own_tasks(tmp_path)
    with pytest.raises(ConfigError, match=message):
        load_study(write(tmp_path / "study.yaml", text))


def test_the_bench_serves_the_adapters_whose_heads_match_and_names_those_left_out(tmp_path):
    # PEFT holds every adapter on one base head: a 3-class task beside binary ones cannot join them.
    from rich.console import Console

    from lorascope.study.bench_stage import trained_adapters
    from lorascope.study.context import StageContext

    own_tasks(tmp_path)
    write(tmp_path / "tasks" / "three.yaml", "name: three\nfiles: {train: three.jsonl, validation: three.jsonl}\n"
          "text_columns: [t]\nlabel_column: y\nlabels: [a, b, c]\n")
    cfg = load_study(write(tmp_path / "study.yaml", "tasks: [tasks/reviews.yaml, tasks/three.yaml, tasks/pairs.yaml]\n"
                           "methods: [lora, full]\nseeds: [1, 2]\n"))
    for task, labels in (("reviews", ["bad", "good"]), ("three", ["a", "b", "c"]), ("pairs", ["different", "same"])):
        for seed in (1, 2):
            write(tmp_path / "out" / "train" / f"{task}-lora-s{seed}" / "metrics.json",
                  json.dumps({"status": "ok", "task": task, "label_names": labels}))
    adapters, left_out = trained_adapters(StageContext(cfg, tmp_path / "out", Console(), {}))
    assert list(adapters) == ["reviews", "pairs", "reviews-s2"] and left_out == {"three": 3}
