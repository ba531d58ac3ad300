"""The command line: useful help, one-line errors with exit status 2, no traceback, no folder."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lorascope.cli.main import app
from tests.conftest import write

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
    import re

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


def test_baselines_cli(glue_dir, tmp_path):
    proc = run_cli("baselines", "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr
    import json

    rows = {r["task"]: r for r in json.loads((tmp_path / "b.json").read_text())["baselines"]}
    # Majority class of training labels on dev, from the data README's label counts.
    assert rows["mrpc"]["majority"]["accuracy"] == pytest.approx(279 / 408)
    assert rows["mrpc"]["majority"]["f1"] == pytest.approx(2 * 279 / (2 * 279 + 129))
    assert rows["sst2"]["majority"]["accuracy"] == pytest.approx(444 / 872)
    assert rows["rte"]["majority"]["accuracy"] == pytest.approx(146 / 277)
    assert rows["rte"]["majority_label"] == "entailment"
    assert rows["sst2"]["random_mean"]["accuracy"] == pytest.approx(0.5, abs=0.01)


def test_train_cli_end_to_end(glue_dir, tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("train", "--task", "rte", "--method", "lora", "--model", "tiny-llama", "--seed", "1",
                   "--out", str(out), "train_limit=16", "eval_limit=8", "epochs=1", "max_length=32")
    assert proc.returncode == 0, proc.stderr
    assert "rte · lora · seed 1: dev set, 8 examples (%)" in proc.stdout
    # No raw Trainer log dicts and no tqdm carriage returns in a log file; every dev metric in percent.
    assert "{'loss'" not in proc.stdout and "\r" not in proc.stdout + proc.stderr
    assert "dev loss" in proc.stdout and "accuracy" in proc.stdout
    # The 8 dev rows hold 4 entailment: a 16-row, 1-epoch run learns nothing, and says so.
    assert "warning: this run did not learn its task" in proc.stdout
    assert (out / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize("command, config", [
    ("train", "lorascope.train.config:TrainConfig"),
    ("drift", "lorascope.drift:DriftConfig"),
    ("represent", "lorascope.represent:RepresentConfig"),
    ("hpo", "lorascope.hpo:HpoConfig"),
    ("bench", "lorascope.bench.config:BenchConfig"),
    ("serve", "lorascope.serve.http.settings:ServerSettings"),
])
def test_help_lists_every_setting(command, config):
    import importlib

    module, name = config.split(":")
    fields = getattr(importlib.import_module(module), name).model_fields
    proc = run_cli(command, "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0
    missing = [f for f in fields if f"{f}:" not in proc.stdout]
    assert not missing, f"`lorascope {command} --help` does not list {missing}"
