"""Killing a study with SIGKILL mid-training and rerunning gives the uninterrupted results."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

# Trains, kills or serves for real: the slow tier (make test runs it; make test-fast skips it).
pytestmark = pytest.mark.slow


def _study(tmp_path: Path, name: str) -> Path:
    cfg = {
        "name": name, "model": "tiny-llama", "tasks": ["rte"], "methods": ["lora", "full"], "seeds": [1],
        "out": str(tmp_path / name), "stages": ["train", "drift"],
        # Several checkpoints per unit, so that a kill lands between checkpoints of a unit.
        "train": {"train_limit": 96, "eval_limit": 16, "epochs": 3, "evals_per_epoch": 2, "batch_size": 8,
                  "max_length": 48, "patience": 0},
        "method_train": {"lora": {"lr": 5e-3}, "full": {"lr": 1e-3}},
        "drift": {"n_samples": 24, "max_length": 48, "bootstrap": 50},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lorascope.cli.main", "study", "run", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _results(out: Path) -> dict:
    runs = {p.parent.name: json.loads(p.read_text()) for p in sorted((out / "train").glob("*/metrics.json"))}
    drift = json.loads((out / "drift" / "rte" / "drift.json").read_text())
    return {
        "dev": {k: v["dev"] for k, v in runs.items()},
        "curves": {k: v["train_loss_curve"] for k, v in runs.items()},
        "drift": [(r["method"], r["mean_drift"], r["mean_drift_debiased"]) for r in drift["runs"]],
    }


@pytest.mark.slow
def test_sigkill_then_rerun_matches_uninterrupted(glue_dir, tmp_path):
    reference = _study(tmp_path, "whole")
    assert _run(reference).wait(timeout=600) == 0

    killed = _study(tmp_path, "killed")
    proc = _run(killed)
    deadline = time.time() + 300
    partial = tmp_path / "killed" / "train"
    # Wait until the second unit has written a checkpoint, then kill without warning.
    while time.time() < deadline and not list(partial.glob("rte-full-s1.partial/checkpoints/checkpoint-*")):
        assert proc.poll() is None, "study finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (partial / "rte-lora-s1" / "metrics.json").is_file()  # the finished unit survived
    assert not (partial / "rte-full-s1").exists()  # the unfinished one is not mistaken for done
    # The killed run's lock died with it: its file may stay, but the folder is free for the rerun.
    from lorascope.artifacts import lock_holder

    assert lock_holder(tmp_path / "killed") is None

    assert _run(killed).wait(timeout=600) == 0
    whole, resumed = _results(tmp_path / "whole"), _results(tmp_path / "killed")
    assert resumed["dev"] == whole["dev"]
    assert resumed["drift"] == whole["drift"]
