"""The command line: useful help, one-line errors with exit status 2, no traceback, no folder."""

import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lorascope.cli.main import app
from tests.conftest import baselines_record, write

LORASCOPE = [sys.executable, "-m", "lorascope.cli.main"]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """In-process (fast): same exit code, stdout and stderr as the real command."""
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def run_process(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """A real process: proves that nothing (no traceback) escapes to the terminal."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*LORASCOPE, *args], capture_output=True, text=True, env=full_env, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize(
    "content,pattern",
    [
        ("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\n", r"train.tsv:3: expected 4 tab-separated fields"),
        ("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tyes\n", r"train.tsv:2: label 'yes'"),
        ("index\tsentence1\tlabel\n0\ta\tentailment\n", r"train.tsv:1: missing column 'sentence2'"),
    ],
)
def test_malformed_data_gives_one_line_error_and_no_folder(tmp_path, content, pattern):
    write(tmp_path / "glue" / "RTE" / "train.tsv", content)
    write(tmp_path / "glue" / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    out = tmp_path / "out"
    proc = run_cli("train", "--task", "rte", "--model", "tiny-llama", "--out", str(out), env={"GLUE_DIR": str(tmp_path / "glue")})
    assert_one_line_error(proc, pattern)
    assert not out.exists() and not (tmp_path / "out.partial").exists()


@pytest.mark.slow
def test_real_process_error_has_no_traceback(tmp_path):
    write(tmp_path / "glue" / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    out = tmp_path / "out"
    proc = run_process("train", "--task", "rte", "--model", "tiny-llama", "--out", str(out), env={"GLUE_DIR": str(tmp_path / "glue")})
    assert_one_line_error(proc, r"train.tsv:2: label 'maybe' in column 'label' is not one of \['entailment', 'not_entailment'\]")
    assert not out.exists() and not (tmp_path / "out.partial").exists()


def test_config_errors_name_the_key(glue_dir, tmp_path):
    proc = run_cli("train", "--task", "rte", "--out", str(tmp_path / "o"), "epochs=abc")
    assert_one_line_error(proc, r"'epochs': Input should be a valid number")
    proc = run_cli("train", "--task", "rte", "--out", str(tmp_path / "o"), "learning_rate=1")
    assert_one_line_error(proc, r"unknown key 'learning_rate'")
    proc = run_cli("train", "--task", "cola", "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, r"task 'cola': expected one of")
    proc = run_cli("train", "--task", "rte", "--model", "no/such/thing/here", "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, r"model 'no/such/thing/here'")
    bad_yaml = write(tmp_path / "c.yaml", "epochs: [1\n")
    proc = run_cli("train", "--config", str(bad_yaml), "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, r"c.yaml:\d+: not valid YAML")
    assert not (tmp_path / "o").exists()


def test_help_lists_settings():
    proc = run_cli("train", "--help")
    assert proc.returncode == 0
    for key in ("train_limit", "lora_alpha", "max_grad_norm", "patience"):
        assert key in proc.stdout


@pytest.mark.slow
def test_baselines_cli(glue_dir, tmp_path):
    import json

    proc = run_cli("baselines", "--json")
    assert proc.returncode == 0, proc.stderr
    assert not proc.stderr
    rows = {r["task"]: r for r in json.loads(proc.stdout)["baselines"]}  # stdout holds the JSON alone
    # Majority class of training labels on dev, from the data README's label counts.
    assert rows["mrpc"]["majority"]["accuracy"] == pytest.approx(279 / 408)
    assert rows["mrpc"]["majority"]["f1"] == pytest.approx(2 * 279 / (2 * 279 + 129))
    assert rows["sst2"]["majority"]["accuracy"] == pytest.approx(444 / 872)
    assert rows["rte"]["majority"]["accuracy"] == pytest.approx(146 / 277)
    assert rows["rte"]["majority_label"] == "entailment"
    assert rows["sst2"]["random_mean"]["accuracy"] == pytest.approx(0.5, abs=0.01)


def test_baselines_old_json_file_form_still_writes_the_file_with_a_note(glue_dir, tmp_path):
    import json

    proc = run_cli("baselines", "--tasks", "rte", "--draws", "10", "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stderr.splitlines()) == ["note: --json FILE is deprecated, use --json > FILE",
                                                "note: --tasks is deprecated, use --task"]
    assert "dev-set baselines" in proc.stdout  # the old form printed the table as well
    assert [r["task"] for r in json.loads((tmp_path / "b.json").read_text())["baselines"]] == ["rte"]


@pytest.mark.slow
def test_train_cli_end_to_end(glue_dir, tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("train", "--task", "rte", "--method", "lora", "--model", "tiny-llama", "--seed", "1",
                   "--out", str(out), "train_limit=16", "eval_limit=8", "epochs=1", "max_length=32")
    assert proc.returncode == 0, proc.stderr
    assert "rte · lora · seed 1: dev set, 8 examples" in proc.stdout
    # No raw Trainer log dicts and no tqdm carriage returns in a log file; accuracy in percent, supports as counts.
    assert "{'loss'" not in proc.stdout and "\r" not in proc.stdout + proc.stderr
    assert "dev loss" in proc.stdout and re.search(r"accuracy \(main\)\D*\d+\.\d%", proc.stdout)
    assert "(n = 4)" in proc.stdout and ".0)" not in proc.stdout
    # The 8 dev rows hold 4 entailment: a 16-row, 1-epoch run learns nothing, and says so.
    assert "warning: this run did not learn its task" in proc.stdout
    assert (out / "adapter" / "adapter_config.json").is_file()


# --- Metrics on their own scale: Matthews correlation on −1..1 (never a percentage), supports as counts. ---


def _mcc_task(folder):
    """A two-label task scored by Matthews correlation: train 16 / 4, dev 8 ``common`` / 2 ``rare``."""
    words = "the a cat dog sat ran on under big small house tree river green blue".split()
    rows = {split: [(" ".join(words[(i * k) % len(words)] for k in (1, 3, 5, 7)) + f" {split} {i}", label)
                    for i, label in enumerate(["common"] * n_common + ["rare"] * n_rare)]
            for split, n_common, n_rare in (("train", 16, 4), ("dev", 8, 2))}
    for split, data in rows.items():
        write(folder / f"{split}.csv", "text,label\n" + "".join(f"{t},{label}\n" for t, label in data))
    return write(folder / "mcc_task.yaml", "name: mcc_task\nfiles: {train: train.csv, validation: dev.csv}\n"
                 "text_columns: [text]\nlabel_column: label\nlabels: [common, rare]\nmetrics: [matthews, accuracy]\n")


@pytest.mark.slow
def test_train_and_baselines_of_an_mcc_task_print_matthews_on_its_own_scale(tmp_path):
    from lorascope.metrics import format_metric
    from lorascope.run_folder import RunFolder

    task = _mcc_task(tmp_path)
    out = tmp_path / "run"
    proc = run_cli("train", "--task", str(task), "--method", "lora", "--model", "tiny-llama", "--seed", "1",
                   "--out", str(out), "epochs=1", "max_length=32", env={"COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    record = RunFolder(out).record()
    value = record.dev["matthews"]
    assert re.search(rf"matthews \(main\)\D*{re.escape(format_metric('matthews', value))}(?!%)", proc.stdout)
    assert re.search(r"majority baseline \(matthews\)\D*0\.000(?!%)", proc.stdout)
    assert re.search(r"accuracy\D*\d+\.\d%", proc.stdout)
    assert "(n = 8)" in proc.stdout and "(n = 2)" in proc.stdout and ".0)" not in proc.stdout
    for reason in (record.learning_check or {})["reasons"]:
        assert "%" not in reason and "not 2 points above" not in reason
        assert reason in proc.stdout.replace("\n", " ") or "same label" in reason

    proc = run_cli("baselines", "--task", str(task), "--draws", "50", env={"COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    assert "matthews 0.000, accuracy 80.0%" in proc.stdout
    assert re.search(r"matthews -?0\.\d{3} ± 0\.\d{3}, accuracy \d+\.\d ± \d+\.\d%", proc.stdout)


def test_train_result_table_writes_mcc_on_its_scale_supports_as_counts_and_the_reason_below_majority():
    import io

    from rich.console import Console

    from lorascope.cli.train_output import print_train_result
    from lorascope.run_folder import RunRecord
    from lorascope.train.learned import learning_check

    # As read back from metrics.json: the record's float typing turns a support of 12 into 12.0.
    record = RunRecord.model_validate({
        "status": "ok", "task": "cola", "method": "lora", "seed": 1, "main_metric": "matthews", "n_eval": 20,
        "dev": {"matthews": -0.215, "accuracy": 0.45, "loss": 0.7},
        "dev_per_label": {"acceptable": {"precision": 0.6, "recall": 0.5, "f1": 0.55, "support": 12},
                          "unacceptable": {"precision": 0.3, "recall": 0.375, "f1": 0.33, "support": 8}},
        "learning_check": learning_check("matthews", -0.215, 0.0, 0.7)})
    assert record.dev_per_label["acceptable"]["support"] == 12.0
    buffer = io.StringIO()
    print_train_result(Console(file=buffer, width=400, color_system=None), record, "out")
    text = buffer.getvalue()
    assert re.search(r"matthews \(main\)\D*-0\.215\b", text) and "-21.5" not in text
    assert re.search(r"majority baseline \(matthews\)\D*0\.000\b", text)
    assert re.search(r"accuracy\D*45\.0%", text)
    assert "acceptable: precision / recall (n = 12)" in text and "(n = 8)" in text and "12.0" not in text
    assert "60.0% / 50.0%" in text
    assert "dev MCC -0.215 is below the majority baseline (0.000) by 0.215" in text
    assert "not 2 points above" not in text


def test_hpo_trials_of_an_mcc_task_on_its_scale(monkeypatch):
    import io

    from rich.console import Console

    from lorascope.cli import hpo

    buffer = io.StringIO()
    monkeypatch.setattr(hpo, "console", Console(file=buffer, width=400, color_system=None))
    from lorascope.hpo.record import HpoRecord

    trial = {"state": "COMPLETE", "status": "ok", "reason": None, "duration_s": 3.0, "params": {"lr": 1e-4}}
    hpo._print_trials(HpoRecord.create(
        study="s", storage="sqlite", task="cola", method="lora", model="m", main_metric="matthews", n_trials=2, seed=0,
        counts={"complete": 2}, space={}, train={}, best={"number": 1, "value": 0.164, "params": {"lr": 1e-4}},
        best_config="best_config.yaml",
        trials=[{**trial, "number": 0, "value": -0.05}, {**trial, "number": 1, "value": 0.164}]))
    text = buffer.getvalue()
    assert "dev matthews" in text and "(%)" not in text
    assert "-0.050" in text and "0.164" in text and "16.4" not in text


def test_study_console_lines_write_mcc_on_its_scale_and_the_runs_warnings(tmp_path):
    from lorascope.artifacts import write_json
    from lorascope.cli.study import _unit_status
    from lorascope.run_folder import METRICS_FILE, RunRecord
    from lorascope.study.stages import baseline_line, unit_result
    from lorascope.train.learned import learning_check

    cola = baselines_record({"cola": {"matthews": 0.0, "accuracy": 0.691}}).baselines[0]
    assert baseline_line(cola) == "  baseline cola: majority matthews 0.000, accuracy 69.1%"
    metrics = {"status": "ok", "task": "cola", "method": "lora", "seed": 1, "main_metric": "matthews",
               "dev": {"matthews": -0.215, "accuracy": 0.5},
               "learning_check": learning_check("matthews", -0.215, 0.0, 0.7),
               "warnings": ["the restored checkpoint (step 4, epoch 1) predicts one label for every dev example"]}
    line = unit_result(RunRecord.model_validate(metrics))
    assert line.startswith("dev matthews -0.215 [yellow](did not learn: dev MCC -0.215 is below the majority "
                           "baseline (0.000) by 0.215)[/]")
    assert line.endswith("[yellow](warning: the restored checkpoint (step 4, epoch 1) predicts one label for every "
                         "dev example)[/]")
    assert unit_result(None) == "[red]failed[/]: no record"
    assert unit_result(RunRecord(status="failed", reason="label [x] unknown")) == "[red]failed[/]: label \\[x] unknown"

    class Unit:
        def folder(self, root):
            return root / "cola-lora-s1"

    (tmp_path / "cola-lora-s1").mkdir()
    write_json(tmp_path / "cola-lora-s1" / METRICS_FILE, metrics)
    assert _unit_status(Unit(), tmp_path, None, False) == ("done", "matthews -0.215")


@pytest.mark.parametrize("command, config", [
    ("train", "lorascope.train.config:TrainConfig"),
    ("sanity", "lorascope.train.config:TrainConfig"),
    ("drift", "lorascope.drift:DriftConfig"),
    ("represent", "lorascope.represent:RepresentConfig"),
    ("hpo", "lorascope.hpo:HpoConfig"),
    ("weights", "lorascope.lenses.config:WeightLensConfig"),
    ("forgetting", "lorascope.lenses.config:ForgettingConfig"),
    ("probes", "lorascope.lenses.config:ProbeConfig"),
    ("bench", "lorascope.bench.config:BenchConfig"),
    ("serve", "lorascope.serve.http.settings:ServerSettings"),
    ("study run", "lorascope.study.config:StudyConfig"),
])
def test_help_lists_every_setting_with_its_type_and_default(command, config):
    import importlib

    module, name = config.split(":")
    fields = getattr(importlib.import_module(module), name).model_fields
    proc = run_cli(*command.split(), "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0
    # `key (type; default …)`, a section's keys dotted (`family.primary (…)`).
    missing = [f for f in fields if not re.search(rf"^ {f} \(.*; (default |required)|^ {f}\.\w+ \(", proc.stdout, re.M)]
    assert not missing, f"`lorascope {command} --help` does not list {missing} with type and default"


# --- What standalone analysis commands print when the models did not learn, or with one seed pair. ---

@pytest.fixture()
def printed(monkeypatch):
    """The text the analysis commands print, on one wide console (no wrapping inside sentences)."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    wide = Console(file=buffer, width=400, color_system=None)
    monkeypatch.setattr("lorascope.cli.analysis.console", wide)
    monkeypatch.setattr("lorascope.cli.lenses.console", wide)
    return buffer


def _run_records(data: dict, task: str) -> list:
    """The ``metrics.json`` records of ``task``'s runs in a study written as dicts."""
    from tests.helpers import study_records

    return [run.record for run in study_records(data).runs_of(task)]


def _drift_result(task_drift: dict, task: str):
    """A report test's drift of one task as the record the drift command prints."""
    from lorascope.drift.record import DriftRecord

    return DriftRecord.create(**{"base": "tiny", "pooling": "mean", "sample_ids": [], "between_seed_drift": {},
                                 **task_drift, "task": task, "n_layers": 1, "controls": [], "primary": "lora"})


@pytest.mark.slow
def test_drift_of_models_that_did_not_learn_prints_the_caveat_before_its_numbers(printed):
    from lorascope.cli.analysis import print_drift_summary
    from lorascope.report.learning import assess
    from tests.test_report_not_learned import not_learned_study

    data = not_learned_study()
    result = _drift_result(data["drift"]["hans"], "hans")
    learning = assess(_run_records(data, "hans"), ("lora", "full"))
    print_drift_summary(result, learning)
    text = printed.getvalue()
    caveat = text.index("LoRA vs full FT is not interpretable: the models did not learn the task")
    assert caveat < text.index("drift reduction LoRA vs full FT")
    assert "is below the majority baseline (0.000) by 0.215" in text
    # Every test is marked, none stands as a finding; no verdict lines repeat the reason.
    tests = [ln for ln in text.splitlines() if "p = " in ln]
    assert tests and all(ln.endswith("(not interpretable)") for ln in tests)
    assert "H1b" not in text
    # MCC on its own scale in the methods table, never a percentage.
    assert "-0.215 ± 0.022 (n=3)" in text and "dev MCC" in text and "-21.5" not in text


def test_drift_of_one_seed_pair_says_no_test_is_possible(printed):
    from lorascope.cli.analysis import print_drift_summary
    from lorascope.report.learning import assess
    from tests.test_report import synthetic_study

    data = synthetic_study(1)
    learning = assess(_run_records(data, "sst2"), ("lora", "full"), majority=0.51)
    assert learning.learned
    print_drift_summary(_drift_result(data["drift"]["sst2"], "sst2"), learning)
    text = printed.getvalue()
    assert "over 1 seed pair" in text and "one seed pair allows no test across seeds" in text
    assert "deltas has 1 value" not in text and "p = " not in text
    assert "80.0% (n=1)" in text  # the numbers are still shown


@pytest.mark.slow
def test_lens_tests_of_models_that_did_not_learn_are_marked(printed):
    from lorascope.cli.lenses import print_weight_summary
    from lorascope.lenses import WeightsRecord
    from lorascope.report.learning import assess
    from tests.test_report_not_learned import not_learned_study

    data = not_learned_study()
    weights = data["weights"]["hans"]
    summary = {"matrices": 2, "relative_update": 0.1, "stable_rank": 2.0, "entropy_rank": 3.0, "intruders": 1,
               "intruders_matched": 1, "intruders_by_epsilon": {"0.5": 1}, "relative_update_whole": 0.05,
               "relative_update_whole_without_embeddings": 0.05}
    whole = {"matrices": 2, "relative_update": 0.05, "relative_update_without_embeddings": 0.05, "adapted_share": 1.0,
             "by_type": {}}
    runs = [{"run": f"hans-{m}-s{s}", "method": m, "seed": s, "summary": summary, "summary_whole": whole, "per_matrix": {}}
            for m in ("lora", "full") for s in range(3)]
    scope = {"like_for_like": "q, v", "like_for_like_by_variant": {"lora": "q, v"}, "whole_model": "q, v",
             "whole_model_matrices": 2, "whole_model_embeddings": [], "whole_model_without_embeddings": "q, v",
             "whole_model_excluded": [], "measures": {}}
    result = WeightsRecord.create(config={"top_k": 10, "epsilon": 0.5}, matrices=weights["matrices"],
                                  matrices_by_variant={"lora": weights["matrices"]}, scope=scope,
                                  matched_update={"relative_update": 0.07, "labels": ["lora", "full"], "runs": 6},
                                  runs=runs, comparison={**weights["comparison"], "seeds": [0, 1, 2]})
    print_weight_summary(result, assess(_run_records(data, "hans"), ("lora", "full")))
    text = printed.getvalue()
    assert text.index("not interpretable: the models did not learn the task") < text.index("relative_update:")
    lines = [ln for ln in text.splitlines() if "paired t-test p =" in ln]
    assert len(lines) == 4 and all(ln.endswith("(two-sided) (not interpretable)") for ln in lines)


def test_lens_of_one_seed_pair_prints_means_and_why_there_is_no_test(printed):
    from lorascope.cli.lenses import _print_tests
    from lorascope.lenses.records import LensComparison

    pair = {"seeds": [1], "measures": {"forgetting": {"lora_mean": 0.01, "lora_sd": None, "lora_n": 1,
                                                       "full_mean": 0.05, "full_sd": None, "full_n": 1}}}
    _print_tests(LensComparison(primary="lora", reference="full", variants={"lora": pair}, **pair))
    text = printed.getvalue()
    assert "forgetting: LoRA 0.01, full 0.05" in text and "one seed pair allows no test across seeds" in text


def _untrained_runs(root):
    """LoRA and full fine-tuning of tiny-llama on MRPC, one seed, at a learning rate too small to move
    anything: both score F1 40.0% on 16 dev rows where always answering the majority label scores 66.7%."""
    from lorascope.train import TrainConfig, run_train

    for method in ("lora", "full"):
        cfg = TrainConfig(task="mrpc", method=method, model="tiny-llama", seed=1, train_limit=24, eval_limit=16,
                          epochs=1, batch_size=8, max_length=48, lr=1e-9)
        assert run_train(cfg, root / f"mrpc-{method}-s1", progress=False).ok
    return root


@pytest.mark.slow
def test_standalone_drift_and_weights_say_the_models_did_not_learn(glue_dir, tmp_path):
    runs = _untrained_runs(tmp_path / "runs")
    drift = run_cli("drift", "--model", "tiny-llama", "--runs", str(runs), "--out", str(tmp_path / "d"),
                    "n_samples=32", "max_length=48", "bootstrap=100", env={"COLUMNS": "400"})
    assert drift.returncode == 0, drift.stderr
    weights = run_cli("weights", "--model", "tiny-llama", "--runs", str(runs), "--out", str(tmp_path / "w"),
                      env={"COLUMNS": "400"})
    assert weights.returncode == 0, weights.stderr
    for out in (drift.stdout, weights.stdout):
        assert "LoRA vs full FT is not interpretable: the models did not learn the task" in out
        assert "LoRA's mean dev F1 over 1 seed, 40.0%, is below the majority baseline (66.7%) by 26.7 points" in out
        assert "one seed pair allows no test across seeds" in out
        assert "has 1 value" not in out
    assert "drift reduction LoRA vs full FT:" in drift.stdout and "(not interpretable)" in drift.stdout
